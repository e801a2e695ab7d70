// Files in a sandbox (docs/API-extensions.md): raw bytes in and out, list,
// stat, remove, mkdir. Paths must be absolute guest paths.
import Type, { type Static } from 'typebox';
import type { FileInfo as AgentFileInfo } from '../../engine/agent/types.js';
import type { App, DaemonContext } from '../context.js';
import { clientGone } from '../client-gone.js';
import { HttpError } from '../http-errors.js';
import {
  ErrorBody,
  FileInfo,
  IdParams,
  MkdirBody,
  PathQuery,
  RemoveFileQuery,
  WriteFileQuery,
} from '../../api/schemas.js';

export const MAX_FILE_BYTES = 64 * 1024 * 1024;

const errors = {
  400: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  413: ErrorBody,
  500: ErrorBody,
  503: ErrorBody,
  507: ErrorBody,
};

function guestPath(path: string): string {
  if (!path.startsWith('/')) throw new HttpError(400, `path must be absolute, got ${JSON.stringify(path)}`);
  return path;
}

function fileInfo(f: AgentFileInfo): Static<typeof FileInfo> {
  return { name: f.name, type: f.type, size: f.size, mode: f.mode, mtime_ms: f.mtimeMs };
}

export function registerFileRoutes(app: App, ctx: DaemonContext): void {
  app.addContentTypeParser(
    'application/octet-stream',
    { parseAs: 'buffer', bodyLimit: MAX_FILE_BYTES },
    (_req, body, done) => done(null, body),
  );

  app.get(
    '/v1/sandboxes/:id/files',
    { schema: { params: IdParams, querystring: PathQuery, response: { 200: Type.Unknown(), ...errors } } },
    async (req, reply) => {
      const path = guestPath(req.query.path);
      const data = await ctx.registry.get(req.params.id).agent.readFile(path, { signal: clientGone(reply) });
      return reply.type('application/octet-stream').send(data);
    },
  );

  app.put(
    '/v1/sandboxes/:id/files',
    {
      bodyLimit: MAX_FILE_BYTES,
      schema: { params: IdParams, querystring: WriteFileQuery, response: { 204: Type.Null(), ...errors } },
    },
    async (req, reply) => {
      const path = guestPath(req.query.path);
      if (!Buffer.isBuffer(req.body)) throw new HttpError(415, 'send the file as application/octet-stream');
      const data = req.body;
      await ctx.registry.get(req.params.id).agent.writeFile(path, data, {
        parents: true,
        ...(req.query.mode ? { mode: Number.parseInt(req.query.mode, 8) } : {}),
      });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/sandboxes/:id/files/list',
    {
      schema: {
        params: IdParams,
        querystring: PathQuery,
        response: { 200: Type.Array(FileInfo), ...errors },
      },
    },
    async (req) => {
      const path = guestPath(req.query.path);
      return (await ctx.registry.get(req.params.id).agent.listDir(path)).map(fileInfo);
    },
  );

  app.get(
    '/v1/sandboxes/:id/files/stat',
    { schema: { params: IdParams, querystring: PathQuery, response: { 200: FileInfo, ...errors } } },
    async (req) => {
      const path = guestPath(req.query.path);
      return fileInfo(await ctx.registry.get(req.params.id).agent.stat(path));
    },
  );

  app.delete(
    '/v1/sandboxes/:id/files',
    { schema: { params: IdParams, querystring: RemoveFileQuery, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      const path = guestPath(req.query.path);
      await ctx.registry.get(req.params.id).agent.remove(path, { recursive: req.query.recursive ?? false });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/sandboxes/:id/files/mkdir',
    { schema: { params: IdParams, body: MkdirBody, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      const path = guestPath(req.body.path);
      await ctx.registry.get(req.params.id).agent.mkdir(path, { parents: req.body.parents ?? false });
      return reply.code(204).send(null);
    },
  );
}
