// `forkd push`: one HTTP PUT of a pack file. It sends an exact
// Content-Length and no chunked encoding, which is what presigned
// object-store URLs (S3, GCS, R2) require, and a bearer token only when one
// is given (a presigned URL carries its own signature).
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { InvalidArgumentError, RemoteError } from '../errors.js';
import { throttledProgress, type TransferProgressFn } from './progress.js';

export interface UploadOptions {
  url: URL;
  path: string;
  token?: string | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: TransferProgressFn | undefined;
}

export interface UploadResult {
  status: number;
  bytes: number;
  /** The server's answer (a hub answers with JSON describing the published version). */
  body: string;
  ms: number;
}

export async function uploadFile(opts: UploadOptions): Promise<UploadResult> {
  const started = Date.now();
  if (opts.url.protocol !== 'http:' && opts.url.protocol !== 'https:') {
    throw new InvalidArgumentError(`push URL ${opts.url.href} is not http(s)`, 'url');
  }
  const size = (await stat(opts.path)).size;
  const progress = throttledProgress(opts.onProgress, 'upload', size);
  const send = opts.url.protocol === 'https:' ? httpsRequest : httpRequest;
  const req = send(opts.url, {
    method: 'PUT',
    signal: opts.signal,
    headers: {
      'content-length': String(size),
      'content-type': 'application/octet-stream',
      ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
    },
  });
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.once('error', reject);
  });
  answered.catch(() => {});
  try {
    await pipeline(
      createReadStream(opts.path),
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          progress.add(chunk.length);
          done(null, chunk);
        },
      }),
      req,
    );
  } catch (err) {
    // A server that refuses early (401, 413) may close before the body is sent: its answer says why.
    const res = await Promise.race([answered, new Promise<null>((r) => setTimeout(r, 500, null))]).catch(
      () => null,
    );
    if (res) return finish(opts, res, size, started);
    throw unreachable(opts.url, err);
  }
  progress.done();
  const res = await answered.catch((err: unknown) => {
    throw unreachable(opts.url, err);
  });
  return finish(opts, res, size, started);
}

async function finish(
  opts: UploadOptions,
  res: IncomingMessage,
  size: number,
  started: number,
): Promise<UploadResult> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks).toString('utf8');
  const status = res.statusCode ?? 0;
  if (status < 200 || status >= 300) {
    const detail = body.trim().slice(0, 300);
    throw new RemoteError(
      `PUT ${redact(opts.url)} answered HTTP ${status}${detail ? `: ${detail}` : ''}`,
      redact(opts.url),
      status,
      {
        hint:
          status === 401 || status === 403
            ? 'check the token (--token-file, FORKD_HUB_TOKEN) or that the presigned URL has not expired'
            : undefined,
      },
    );
  }
  return { status, bytes: size, body, ms: Date.now() - started };
}

function unreachable(url: URL, err: unknown): RemoteError {
  const code = (err as NodeJS.ErrnoException).code;
  return new RemoteError(
    `cannot upload to ${url.origin}: ${code ?? (err as Error).message}`,
    redact(url),
    null,
  );
}

/** A presigned URL's query string is a credential: never print it. */
export function redact(url: URL): string {
  return url.search ? `${url.origin}${url.pathname}?…` : url.href;
}
