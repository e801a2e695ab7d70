// `forkd hub serve DIR`: a self-hostable hub. It serves DIR/index.json and
// the packs under DIR/packs/ (with Range, so pulls resume), and with a token
// accepts uploads: `PUT /packs/<owner>/<name>/<version>.forkd.tar.zst`. An
// upload is hashed as it arrives, checked to be a pack, moved into place and
// recorded in the index atomically; a failed upload leaves nothing.
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import fastifyStatic from '@fastify/static';
import { codeForStatus, ForkdError, HTTP_STATUS } from '../errors.js';
import { bearerStatus } from '../util/bearer-token.js';
import { PACK_EXTENSION } from './pack-manifest.js';
import { checkPackageName, packRelativePath, publishPack } from './publish.js';
import { INDEX_FILE, emptyIndex } from './registry-index.js';

export interface HubServerOptions {
  dir: string;
  host?: string | undefined;
  port?: number | undefined;
  /** Uploads need this bearer token; without one the hub is read-only. */
  token?: string | undefined;
  maxUploadBytes?: number | undefined;
  log?: boolean | undefined;
}

export interface HubServer {
  app: FastifyInstance;
  url: string;
  close(): Promise<void>;
}

export const DEFAULT_MAX_UPLOAD_BYTES = 64 * 2 ** 30;

interface UploadParams {
  owner: string;
  name: string;
  file: string;
}

export async function startHubServer(opts: HubServerOptions): Promise<HubServer> {
  const dir = resolve(opts.dir);
  const maxUpload = opts.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES;
  await mkdir(join(dir, 'packs'), { recursive: true });
  const app = Fastify({ logger: opts.log ?? false });

  // Upload bodies are streamed to disk by the route, never buffered.
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ForkdError) {
      return reply.code(HTTP_STATUS[err.code]).send({ error: err.oneLine(), code: err.code });
    }
    const f = err as { statusCode?: unknown; message?: unknown };
    const status = typeof f.statusCode === 'number' && f.statusCode >= 400 ? f.statusCode : 500;
    const message = typeof f.message === 'string' ? f.message : String(err);
    return reply.code(status).send({ error: message, code: codeForStatus(status) });
  });

  app.get('/', async () => ({ service: 'forkd-hub', index: `/${INDEX_FILE}` }));

  app.get(`/${INDEX_FILE}`, async (_req, reply) => {
    const text = await readFile(join(dir, INDEX_FILE), 'utf8').catch(() => JSON.stringify(emptyIndex()));
    return reply.header('cache-control', 'no-cache').type('application/json').send(text);
  });

  await app.register(fastifyStatic, {
    root: join(dir, 'packs'),
    prefix: '/packs/',
    decorateReply: false,
    dotfiles: 'deny',
    index: false,
    list: false,
    cacheControl: false,
    serveDotFiles: false,
  });

  app.put<{ Params: UploadParams; Querystring: { force?: string } }>(
    '/packs/:owner/:name/:file',
    async (req, reply) => {
      if (!opts.token)
        return refuse(reply, 403, 'uploads are disabled on this hub (start it with --token-file)');
      const auth = bearerStatus(req.headers.authorization, opts.token);
      if (auth !== 'ok') return refuse(reply, 401, `${auth} bearer token`);
      const { owner, name, file } = req.params;
      if (!file.endsWith(PACK_EXTENSION)) return refuse(reply, 400, `upload a ${PACK_EXTENSION} file`);
      const version = file.slice(0, -PACK_EXTENSION.length);
      checkPackageName(`${owner}/${name}`, version);
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > maxUpload) {
        return refuse(reply, 413, `the upload is ${declared} bytes; this hub takes at most ${maxUpload}`);
      }
      const packageDir = join(dir, 'packs', owner, name);
      await mkdir(packageDir, { recursive: true });
      const temp = join(packageDir, `.upload-${randomBytes(6).toString('hex')}`);
      const hash = createHash('sha256');
      let received = 0;
      try {
        await pipeline(
          req.body as Readable,
          new Transform({
            transform(chunk: Buffer, _enc, done) {
              received += chunk.length;
              if (received > maxUpload) return done(new UploadTooLarge(maxUpload));
              hash.update(chunk);
              done(null, chunk);
            },
          }),
          createWriteStream(temp, { flags: 'wx' }),
        );
        const published = await publishPack({
          hubDir: dir,
          file: temp,
          name: `${owner}/${name}`,
          version,
          move: true,
          force: req.query.force === '1' || req.query.force === 'true',
          sha256: hash.digest('hex'),
        });
        const origin = `${req.protocol}://${req.host}`;
        return reply.code(201).send({
          name: published.name,
          version: published.version,
          url: `${origin}/${packRelativePath(published.name, published.version)}`,
          sha256: published.entry.sha256,
          size_bytes: published.entry.size_bytes,
        });
      } catch (err) {
        if (err instanceof UploadTooLarge) return refuse(reply, 413, err.message);
        throw err;
      } finally {
        await rm(temp, { force: true });
      }
    },
  );

  const address = await app.listen({ host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 });
  return { app, url: address, close: () => app.close() };
}

class UploadTooLarge extends Error {
  constructor(limit: number) {
    super(`the upload is larger than this hub's ${limit}-byte limit`);
  }
}

function refuse(reply: FastifyReply, status: number, error: string): FastifyReply {
  return reply.code(status).send({ error, code: codeForStatus(status) });
}
