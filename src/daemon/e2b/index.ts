// The E2B layer: E2B's control API at /e2b and each sandbox's envd and code
// interpreter at /e2b-sandbox (E2B_API_URL and E2B_SANDBOX_URL point there),
// so programs written for E2B's SDK run against forkd unchanged. Its errors
// are E2B's `{code, message}` (Connect's own shape for RPCs, in connect.ts).
import type { FastifyReply } from 'fastify';
import type { App, DaemonContext } from '../context.js';
import type { CommandRegistry } from '../command-registry.js';
import { toHttpError } from '../http-errors.js';
import { registerCodeInterpreterRoutes } from './code-interpreter.js';
import { acceptConnectBodies } from './connect.js';
import { registerControlRoutes } from './control-routes.js';
import { registerEnvdFileRoutes } from './files-http.js';
import { registerFilesystemService } from './filesystem-service.js';
import { proxyToUserPort, userPortOf } from './port-proxy.js';
import { ProcessTable, registerProcessService } from './process-service.js';
import { E2bSandboxes } from './sandboxes.js';
import { EnvdError, SANDBOX_PREFIX, e2bTarget } from './target.js';

export { routeByE2bHost } from './host-routing.js';
export { checkE2bDomain, ensureLocalTls, localTlsDomain, localTlsPaths } from './local-ca.js';
export { SANDBOX_PREFIX } from './target.js';
/** Where E2B_API_URL points on the daemon. */
export const API_PREFIX = '/e2b';
/** The domain sandbox host names are under unless the daemon is given one (`<port>-<id>.localhost`). */
export const DEFAULT_E2B_DOMAIN = 'localhost';

export interface E2bLayerOptions {
  /** Running E2B sandboxes at once (past it, create and fork answer 429). */
  maxSandboxes?: number;
  log?: (message: string) => void;
}

export interface E2bLayer {
  sandboxes: E2bSandboxes;
  close(): void;
}

function e2bError(err: unknown, reply: FastifyReply): FastifyReply {
  const { status, message } =
    err instanceof EnvdError ? { status: err.status, message: err.message } : toHttpError(err);
  return reply.code(status).send({ code: status, message });
}

export async function registerE2b(
  app: App,
  ctx: DaemonContext,
  commands: CommandRegistry,
  opts: E2bLayerOptions = {},
): Promise<E2bLayer> {
  const processes = new ProcessTable();
  const sandboxes = new E2bSandboxes(ctx, { ...opts, onForget: (id) => processes.forget(id) });
  // Other ports than envd's and the interpreter's go to the guest before any route is matched.
  app.addHook('onRequest', (req, reply, done) => {
    const port = userPortOf(req.raw);
    if (port === null) done();
    else proxyToUserPort(req, reply, sandboxes, port);
  });
  await app.register(
    async (api) => {
      api.setErrorHandler((err, _req, reply) => e2bError(err, reply));
      registerControlRoutes(api, sandboxes);
    },
    { prefix: API_PREFIX },
  );
  await app.register(async (child) => {
    const sbx = child as unknown as App;
    sbx.setErrorHandler((err, _req, reply) => e2bError(err, reply));
    acceptConnectBodies(sbx);
    // envd's health probe: the SDK reads 502 as "the sandbox is gone".
    sbx.get(`${SANDBOX_PREFIX}/health`, async (req, reply) => {
      e2bTarget(req, sandboxes);
      return reply.code(204).send();
    });
    registerProcessService(sbx, sandboxes, commands, processes);
    registerFilesystemService(sbx, sandboxes);
    registerEnvdFileRoutes(sbx, sandboxes);
    registerCodeInterpreterRoutes(sbx, sandboxes);
  });
  return { sandboxes, close: () => sandboxes.close() };
}
