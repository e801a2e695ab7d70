// Downloads for `forkd pull`: the registry index, and packs into a
// `.partial` file that a later run resumes with an HTTP Range request. The
// sha256 covers the whole file, resumed or not; a mismatch deletes it.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { CorruptError, NotFoundError, RemoteError } from '../errors.js';
import { throttledProgress, type TransferProgressFn } from './progress.js';

export interface DownloadOptions {
  url: URL;
  /** The finished file; bytes arrive in `${dest}.partial` first. */
  dest: string;
  expectedSha256?: string | null | undefined;
  headers?: Record<string, string> | undefined;
  signal?: AbortSignal | undefined;
  onProgress?: TransferProgressFn | undefined;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes that were already on disk from an interrupted download. */
  resumedFrom: number;
  ms: number;
}

async function request(url: URL, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, { redirect: 'follow', ...init });
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new RemoteError(
      `cannot reach ${url.origin}: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
      url.href,
      null,
      {
        hint: 'check the hub URL (--hub, FORKD_HUB_URL) and that the hub is running',
      },
    );
  }
}

export function httpFailure(url: URL, res: Response, body: string): Error {
  const detail = body.trim().slice(0, 200);
  if (res.status === 404) {
    return new NotFoundError(`${url.href} was not found (HTTP 404)`, { kind: 'url', name: url.href });
  }
  return new RemoteError(
    `${url.href} answered HTTP ${res.status}${detail ? `: ${detail}` : ''}`,
    url.href,
    res.status,
  );
}

export async function fetchJson(url: URL, opts: { signal?: AbortSignal | undefined } = {}): Promise<unknown> {
  const res = await request(url, { signal: opts.signal, headers: { accept: 'application/json' } });
  const text = await res.text();
  if (!res.ok) throw httpFailure(url, res, text);
  try {
    return JSON.parse(text);
  } catch {
    throw new RemoteError(`${url.href} did not answer with JSON`, url.href, res.status);
  }
}

export async function downloadFile(opts: DownloadOptions): Promise<DownloadResult> {
  const started = Date.now();
  const partial = `${opts.dest}.partial`;
  await mkdir(dirname(opts.dest), { recursive: true });
  const hash = createHash('sha256');
  const have = await stat(partial).then(
    (s) => s.size,
    () => 0,
  );
  if (have > 0) {
    for await (const chunk of createReadStream(partial)) hash.update(chunk as Buffer);
  }
  const res = await request(opts.url, {
    signal: opts.signal,
    headers: { ...opts.headers, ...(have > 0 ? { range: `bytes=${have}-` } : {}) },
  });
  if (res.status === 416 && have > 0) {
    // The partial file is already whole (or the server changed): start over once.
    await res.body?.cancel();
    await rm(partial, { force: true });
    return downloadFile(opts);
  }
  if (!res.ok) throw httpFailure(opts.url, res, await res.text());
  // A server without Range support sends the whole file again.
  if (have > 0 && res.status !== 206) return restart(opts, res, started);
  return finish(opts, res, { hash, have, resumedFrom: have, started });
}

async function restart(opts: DownloadOptions, res: Response, started: number): Promise<DownloadResult> {
  await rm(`${opts.dest}.partial`, { force: true });
  return finish(opts, res, { hash: createHash('sha256'), have: 0, resumedFrom: 0, started });
}

async function finish(
  opts: DownloadOptions,
  res: Response,
  state: { hash: ReturnType<typeof createHash>; have: number; resumedFrom: number; started: number },
): Promise<DownloadResult> {
  const partial = `${opts.dest}.partial`;
  const length = Number(res.headers.get('content-length'));
  const total = Number.isFinite(length) && length > 0 ? state.have + length : null;
  const progress = throttledProgress(opts.onProgress, 'download', total);
  progress.add(state.have);
  let bytes = state.have;
  try {
    if (res.body) {
      await pipeline(
        Readable.fromWeb(res.body as WebReadableStream<Uint8Array>),
        new Transform({
          transform(chunk: Buffer, _enc, done) {
            state.hash.update(chunk);
            bytes += chunk.length;
            progress.add(chunk.length);
            done(null, chunk);
          },
        }),
        createWriteStream(partial, { flags: state.have > 0 ? 'a' : 'w' }),
      );
    }
  } catch (err) {
    if ((err as Error).name === 'AbortError') throw err;
    throw new RemoteError(
      `the download of ${opts.url.href} broke off after ${bytes} bytes: ${(err as Error).message}`,
      opts.url.href,
      res.status,
      { hint: 'run the same command again to resume it' },
    );
  }
  progress.done();
  if (total !== null && bytes !== total) {
    throw new RemoteError(
      `the download of ${opts.url.href} stopped at ${bytes} of ${total} bytes`,
      opts.url.href,
      res.status,
      {
        hint: 'run the same command again to resume it',
      },
    );
  }
  const sha256 = state.hash.digest('hex');
  if (opts.expectedSha256 && sha256 !== opts.expectedSha256) {
    await rm(partial, { force: true });
    throw new CorruptError(
      `${opts.url.href} has sha256 ${sha256}, but the index says ${opts.expectedSha256}`,
      opts.url.href,
      { hint: 'the pack on the hub changed or was tampered with; ask its publisher' },
    );
  }
  await rename(partial, opts.dest);
  return { path: opts.dest, bytes, sha256, resumedFrom: state.resumedFrom, ms: Date.now() - state.started };
}
