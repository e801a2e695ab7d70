// envd's plain-HTTP file routes under E2B_SANDBOX_URL: GET /files?path=
// answers the file's bytes; POST /files?path= writes one file from an
// application/octet-stream body (optionally Content-Encoding: gzip, envd
// 0.5.7's upload) or any number from a multipart/form-data body (field
// `file`, each part's filename its path unless ?path= names it), answering
// [{name, type: "file", path}]. Errors are envd's JSON {code, message}.
// Files are whole in memory on the way through (the agent writes a buffer),
// so bodies, decompressed ones included, are capped at MAX_FILE_BYTES: 413.
// `username` is accepted and ignored: every guest file operation runs as root.
import type { IncomingMessage } from 'node:http';
import { constants } from 'node:os';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Sandbox } from '../../engine/index.js';
import { AgentError } from '../../errors.js';
import type { App } from '../context.js';
import { clientGone } from '../client-gone.js';
import { HttpError, toHttpError } from '../http-errors.js';
import { MAX_FILE_BYTES } from '../routes/files.js';
import { resolvedPath } from './filesystem-service.js';
import { e2bTarget, EnvdError, SANDBOX_PREFIX, type E2bLookup } from './target.js';

/** A multipart body may exceed one file's cap by its framing (boundaries, part headers). */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;
/** Bytes of a refused (too large) body read and dropped so the client sees the 413; past it the connection is cut. */
const DISCARD_LIMIT_BYTES = 64 * 1024 * 1024;
/** Deadline of one file's read or write in the guest. */
const FILE_TIMEOUT_MS = 120_000;

/** envd's answer for one written file. */
export interface WrittenFileJson {
  name: string;
  type: 'file';
  path: string;
}

function writtenFile(path: string): WrittenFileJson {
  return { name: posix.basename(path), type: 'file', path };
}

function queryParam(req: FastifyRequest, name: string): string | undefined {
  const v = (req.query as Record<string, unknown> | undefined)?.[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new HttpError(400, `give ${name} once`);
  return v;
}

function sendError(reply: FastifyReply, err: unknown): FastifyReply {
  let status: number;
  let message: string;
  if (err instanceof EnvdError) ({ status, message } = err);
  else if (err instanceof AgentError && err.errno === constants.errno.EISDIR) {
    // envd's answer for reading or writing a directory; the generic mapping says 409.
    status = 400;
    message = `path is a directory: ${err.message}`;
  } else ({ status, message } = toHttpError(err));
  return reply.code(status).type('application/json').send({ code: status, message });
}

/** Reads what is left of a refused body without keeping it, so the answer reaches the client; cuts the connection past a limit. */
function discardRest(raw: IncomingMessage): void {
  let dropped = 0;
  raw.on('data', (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > DISCARD_LIMIT_BYTES) raw.destroy();
  });
  raw.resume();
}

/**
 * The request body (gunzipped when so encoded) as one buffer of at most
 * `maxBytes`. Past the cap it rejects with 413 at once and drops the rest;
 * a body that is not gzip when it says it is is a 400.
 */
export function readBody(raw: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const encoding = String(raw.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding !== 'identity' && encoding !== 'gzip')
    return Promise.reject(new HttpError(400, `unsupported Content-Encoding ${encoding}: send gzip or none`));
  const gunzip = encoding === 'gzip' ? createGunzip() : null;
  const source: Readable = gunzip ? raw.pipe(gunzip) : raw;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      source.off('data', onData);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      settle(new HttpError(413, `the upload is larger than the ${maxBytes}-byte limit`));
      if (gunzip) {
        raw.unpipe(gunzip);
        gunzip.destroy();
      }
      discardRest(raw);
    };
    source.on('data', onData);
    source.once('end', () => settle(null));
    source.once('error', (err) =>
      settle(
        gunzip && source === gunzip ? new HttpError(400, `the body is not valid gzip: ${err.message}`) : err,
      ),
    );
    if (gunzip) raw.once('error', (err) => settle(err));
    raw.once('close', () => {
      if (!raw.complete) settle(new HttpError(400, 'the client went away during the upload'));
    });
  });
}

/**
 * The `file` parts of a multipart body, by Node's own parser (undici's
 * Response.formData): no dependency for a format the SDK only ever sends
 * whole (its multipart uploads are in-memory Blobs), and the body it parses
 * is already capped by readBody.
 */
async function fileParts(
  body: Buffer,
  contentType: string,
): Promise<Array<{ filename: string; data: Buffer }>> {
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch (err) {
    throw new HttpError(400, `the multipart body cannot be parsed: ${(err as Error).message}`);
  }
  const parts: Array<{ filename: string; data: Buffer }> = [];
  for (const value of form.getAll('file')) {
    if (typeof value === 'string') parts.push({ filename: '', data: Buffer.from(value, 'utf8') });
    else parts.push({ filename: value.name, data: Buffer.from(await value.arrayBuffer()) });
  }
  return parts;
}

async function writeFiles(
  sandbox: Sandbox,
  reply: FastifyReply,
  files: Array<{ path: string; data: Buffer }>,
): Promise<WrittenFileJson[]> {
  const signal = clientGone(reply);
  const written: WrittenFileJson[] = [];
  for (const file of files) {
    if (file.data.length > MAX_FILE_BYTES)
      throw new HttpError(413, `${file.path} is larger than the ${MAX_FILE_BYTES}-byte limit`);
    await sandbox.agent.writeFile(
      file.path,
      file.data,
      { parents: true },
      { signal, timeoutMs: FILE_TIMEOUT_MS },
    );
    written.push(writtenFile(file.path));
  }
  return written;
}

async function upload(
  req: FastifyRequest,
  reply: FastifyReply,
  lookup: E2bLookup,
): Promise<WrittenFileJson[]> {
  // Before reading the body: an unknown sandbox or a wrong token costs no upload.
  const { sandbox } = e2bTarget(req, lookup);
  const pathParam = queryParam(req, 'path');
  const contentType = String(req.headers['content-type'] ?? '');
  const mediaType = contentType.split(';')[0]!.trim().toLowerCase();
  if (mediaType === 'application/octet-stream') {
    if (!pathParam) throw new HttpError(400, 'path query parameter is required for raw body upload');
    const data = await readBody(req.raw, MAX_FILE_BYTES);
    return writeFiles(sandbox, reply, [{ path: resolvedPath(pathParam), data }]);
  }
  if (mediaType === 'multipart/form-data') {
    const body = await readBody(req.raw, MAX_FILE_BYTES + MULTIPART_OVERHEAD_BYTES);
    const files: Array<{ path: string; data: Buffer }> = [];
    for (const part of await fileParts(body, contentType)) {
      const name = pathParam ?? part.filename;
      if (!name) throw new HttpError(400, 'a file part has no filename and no path query parameter names it');
      const path = resolvedPath(name);
      if (files.some((f) => f.path === path))
        throw new HttpError(
          400,
          `you cannot upload multiple files to the same path '${path}' in one request`,
        );
      files.push({ path, data: part.data });
    }
    if (files.length === 0) throw new HttpError(400, 'the multipart body has no `file` part');
    return writeFiles(sandbox, reply, files);
  }
  throw new HttpError(
    400,
    `unsupported content type: ${contentType || '(none)'}, expected multipart/form-data or application/octet-stream`,
  );
}

/** Registers GET and POST /files under E2B_SANDBOX_URL. */
export function registerEnvdFileRoutes(app: App, lookup: E2bLookup): void {
  // A context of their own: the daemon's octet-stream parser buffers whole
  // bodies before the route runs; here the route reads (and caps) them itself.
  void app.register(async (scope) => {
    const files = scope as unknown as App;
    if (files.hasContentTypeParser('application/octet-stream'))
      files.removeContentTypeParser('application/octet-stream');
    files.addContentTypeParser(['application/octet-stream', 'multipart/form-data'], (_req, _payload, done) =>
      done(null),
    );

    files.get(`${SANDBOX_PREFIX}/files`, async (req, reply) => {
      try {
        const { sandbox } = e2bTarget(req, lookup);
        const path = queryParam(req, 'path');
        if (path === undefined) throw new HttpError(400, 'path query parameter is required');
        const guestPath = resolvedPath(path);
        const data = await sandbox.agent.readFile(guestPath, {
          maxBytes: MAX_FILE_BYTES,
          signal: clientGone(reply),
          timeoutMs: FILE_TIMEOUT_MS,
        });
        return await reply.code(200).type('application/octet-stream').send(data);
      } catch (err) {
        return sendError(reply, err);
      }
    });

    files.post(`${SANDBOX_PREFIX}/files`, async (req, reply) => {
      try {
        return await reply
          .code(200)
          .type('application/json')
          .send(await upload(req, reply, lookup));
      } catch (err) {
        return sendError(reply, err);
      }
    });
  });
}
