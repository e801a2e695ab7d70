// The daemon: a Fastify app over one Engine. Wires auth, the audit log,
// metrics and the single error mapper around the route modules.
import Fastify from 'fastify';
import swagger from '@fastify/swagger';
import { FORKD_VERSION } from '../version.js';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { chmod, lstat, mkdir, readFile, unlink } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { claimDataDir, Engine, type DaemonLock } from '../engine/index.js';
import { InvalidArgumentError } from '../errors.js';
import { AuditLog } from './audit.js';
import { checkBearer, isOpenPath, loadToken } from './auth.js';
import type { App, DaemonContext } from './context.js';
import { toHttpError } from './http-errors.js';
import { createMetrics } from './metrics.js';
import { BranchJobs } from './branch-jobs.js';
import { registerMetaRoutes } from './routes/meta.js';
import { registerSandboxRoutes } from './routes/sandboxes.js';
import { registerWorkspaceRoutes } from './routes/workspaces.js';
import { registerCommandRoutes } from './routes/commands.js';
import { registerFileRoutes } from './routes/files.js';
import { attachPortUpgrades, registerPortRoutes } from './routes/ports.js';
import { registerForkRunningRoute } from './routes/fork-running.js';
import { registerTreeRoute, registerUiRoute } from './routes/tree.js';
import { CommandRegistry } from './command-registry.js';
import { registerSnapshotRoutes } from './routes/snapshots.js';
import {
  API_PREFIX,
  checkE2bDomain,
  DEFAULT_E2B_DOMAIN,
  ensureLocalTls,
  registerE2b,
  routeByE2bHost,
} from './e2b/index.js';
import { SandboxRegistry } from './sandbox-registry.js';
import { StateDb } from './state-db.js';
import { syncSnapshotTable } from './snapshot-sync.js';

export const MAX_BODY_BYTES = 1024 * 1024;
/** The daemon's ceiling on `max_output_bytes` unless `--max-output-bytes` says otherwise. */
export const DEFAULT_MAX_OUTPUT_LIMIT = 256 * 1024 * 1024;
/** How long a stopping daemon waits for streamed commands to finish. */
export const DRAIN_TIMEOUT_MS = 30_000;
/** How long a stopping daemon waits for other requests in flight before it closes their connections. */
export const CLOSE_GRACE_MS = 5_000;

export interface DaemonOptions {
  dataDir?: string;
  host?: string;
  port?: number;
  /**
   * Listen on this unix socket (mode 0600: only this user, and root, can
   * connect) instead of TCP. Local clients then need no token, and no
   * process that merely reaches a TCP port can call.
   */
  socketPath?: string;
  tokenFile?: string;
  /** Audit JSONL path; default <data-dir>/audit.jsonl. */
  auditLog?: string;
  tls?: { certFile: string; keyFile: string };
  /** Structured (pino) request logs on stderr at this level; off when unset. */
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** SQLite state database; default <data-dir>/forkd.db. */
  stateDb?: string;
  /** Warm pools to keep, tag → size: `prewarm: true` requests are served from them. */
  prewarm?: Record<string, number>;
  /** The most exec output a call may ask to keep (default DEFAULT_MAX_OUTPUT_LIMIT). */
  maxOutputBytes?: number;
  /** The domain E2B host names are under: `api.<domain>`, `<port>-<id>.<domain>` (default localhost). */
  e2bDomain?: string;
  /** Serve TLS with a certificate for the E2B domain from a local CA made in <data-dir>/e2b-tls. */
  e2bTls?: boolean;
  /** Running E2B sandboxes at once through the E2B layer (default 100). */
  e2bMaxSandboxes?: number;
  /** Private ranges sandboxes with a network policy may reach too (`--egress-allow-cidr`). */
  egressAllowCidrs?: readonly string[];
  log?: (msg: string) => void;
}

export interface RunningDaemon {
  url: string;
  app: App;
  context: DaemonContext;
  /** Stop accepting, drain in-flight requests, leave sandboxes running. */
  close(): Promise<void>;
}

/** A socket file left by a daemon that died is replaced; anything else at the path is an error. */
async function removeStaleSocket(path: string): Promise<void> {
  const existing = await lstat(path).catch(() => null);
  if (!existing) return;
  if (!existing.isSocket()) {
    throw new InvalidArgumentError(`${path} exists and is not a socket`, 'bind', {
      hint: 'pick another --bind unix:PATH',
    });
  }
  await unlink(path);
}

/**
 * The credential a request carries: the Authorization header, or for E2B's
 * control API its X-API-KEY (the daemon's token is the E2B API key). E2B's
 * sandbox routes carry per-sandbox tokens instead, checked there.
 */
function bearerOf(url: string, headers: import('node:http').IncomingHttpHeaders): string | undefined {
  const apiKey = headers['x-api-key'];
  if (url.startsWith(`${API_PREFIX}/`) && typeof apiKey === 'string' && !headers.authorization)
    return `Bearer ${apiKey}`;
  return headers.authorization;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<RunningDaemon> {
  const host = opts.host ?? '127.0.0.1';
  const token = opts.tokenFile ? await loadToken(opts.tokenFile) : null;
  if (!token && !opts.socketPath && !isLoopback(host)) {
    throw new InvalidArgumentError(`refusing to listen on ${host} without a token`, 'bind', {
      hint: 'pass --token-file, or bind to 127.0.0.1',
    });
  }
  if (opts.e2bTls && opts.tls) {
    throw new InvalidArgumentError('--e2b-tls makes its own certificate: drop --tls-cert/--tls-key', 'tls');
  }
  if (opts.e2bDomain !== undefined) checkE2bDomain(opts.e2bDomain);
  const engine = new Engine({ dataDir: opts.dataDir, egressAllowCidrs: opts.egressAllowCidrs });
  await mkdir(engine.dataDir.root, { recursive: true });
  // Before anything touches the sandboxes: a second daemon must not fight the first for them.
  const lock = await claimDataDir(engine.dataDir);
  try {
    return await serveOn(engine, lock, opts, token);
  } catch (err) {
    await engine.close().catch(() => undefined);
    await lock.release();
    throw err;
  }
}

async function serveOn(
  engine: Engine,
  lock: DaemonLock,
  opts: DaemonOptions,
  token: string | null,
): Promise<RunningDaemon> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => undefined);
  const db = new StateDb(opts.stateDb ?? join(engine.dataDir.root, 'forkd.db'));
  await syncSnapshotTable(engine, db);
  const registry = new SandboxRegistry(engine, db);
  const branches = new BranchJobs(engine);
  const metrics = createMetrics({
    snapshots: async () => (await engine.store.list()).length,
    sandboxes: () => registry.size,
    branches: () => branches.running,
    branchCap: branches.cap,
    usage: async () => {
      const all = await Promise.all(
        registry.list().map(async (s) => ({ id: s.id, usage: await s.usage().catch(() => null) })),
      );
      return all.flatMap((u) => (u.usage ? [{ id: u.id, usage: u.usage }] : []));
    },
    agentHealth: () => registry.list().map((s) => ({ id: s.id, ...s.agent.health })),
  });
  const limits = { maxOutputBytes: opts.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_LIMIT };
  const context: DaemonContext = { engine, limits, registry, metrics, db, branches };
  const { adopted, interrupted } = await registry.adoptRunning(log);
  if (adopted) log(`re-attached ${adopted} running sandboxes`);
  for (const tag of interrupted) {
    branches.markFailed(tag, 'interrupted: the daemon stopped while this snapshot was being written');
    log(`snapshot ${tag} was being written when the daemon stopped: removed, listed as failed`);
  }
  for (const [tag, size] of Object.entries(opts.prewarm ?? {})) {
    await engine.prewarm(tag, size);
    log(`warm pool for ${tag}: ${size} children`);
  }

  // E2B's domain mode: TLS with a certificate for the domain from forkd's own local CA.
  const tls = opts.e2bTls
    ? await ensureLocalTls(engine.dataDir.root, opts.e2bDomain ?? DEFAULT_E2B_DOMAIN)
    : opts.tls;
  const https = tls ? { key: await readFile(tls.keyFile), cert: await readFile(tls.certFile) } : null;
  // Structured logs (pino, through Fastify) as JSON lines on stderr when asked for.
  const logger = opts.logLevel ? { level: opts.logLevel, stream: process.stderr } : false;
  // E2B's host names (`api.<domain>`, `<port>-<id>.<domain>`) route to its routes (e2b/host-routing.ts).
  const rewriteUrl = routeByE2bHost(opts.e2bDomain ?? DEFAULT_E2B_DOMAIN, API_PREFIX);
  const app = (https
    ? Fastify({ bodyLimit: MAX_BODY_BYTES, https, logger, rewriteUrl })
    : Fastify({ bodyLimit: MAX_BODY_BYTES, logger, rewriteUrl })
  ).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;
  // JSON only: anything else is a 415, not a string handed to a route.
  app.removeContentTypeParser('text/plain');
  // The original clients send `content-type: application/json` with no body on
  // bodiless calls (DELETE, ping): that is no body, not a malformed one.
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body === '') {
      done(null, undefined);
      return;
    }
    void parseJson(req, typeof body === 'string' ? body : body.toString('utf8'), done);
  });

  // The socket's own peer, never a header: on a unix socket there is no address.
  const remoteOf = (address: string | undefined): string =>
    opts.socketPath ? `unix:${opts.socketPath}` : (address ?? 'unknown');
  const audit = new AuditLog(opts.auditLog ?? join(engine.dataDir.root, 'audit.jsonl'));
  app.addHook('onRequest', (req, _reply, done) => {
    try {
      if (token && !isOpenPath(req.url)) checkBearer(bearerOf(req.url, req.headers), token);
      done();
    } catch (err) {
      done(err as Error);
    }
  });
  app.addHook('onResponse', async (req, reply) => {
    metrics.requests.labels(req.method, String(reply.statusCode)).inc();
    audit.write({
      ts: new Date().toISOString(),
      method: req.method,
      path: req.url.split('?')[0] ?? req.url,
      status: reply.statusCode,
      latency_us: Math.round(reply.elapsedTime * 1000),
      ua: req.headers['user-agent'] ?? null,
      remote: remoteOf(req.socket.remoteAddress ?? req.ip),
    });
  });
  app.setErrorHandler((err, _req, reply) => {
    const { status, message, code } = toHttpError(err);
    return reply.code(status).send({ error: message, code });
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}`, code: 'not_found' }),
  );

  // The OpenAPI document is generated from the same route schemas that validate requests.
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'forkd',
        version: FORKD_VERSION,
        description: 'forkd REST API: v1 (API-v1.md) plus extensions (docs/API-extensions.md)',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: token ? [{ bearer: [] }] : [],
    },
  });
  app.get('/openapi.json', { schema: { hide: true } } as object, async () => app.swagger());
  registerMetaRoutes(app, context);
  registerSnapshotRoutes(app, context);
  registerSandboxRoutes(app, context);
  registerWorkspaceRoutes(app, context);
  const commands = new CommandRegistry();
  registerCommandRoutes(app, context, commands);
  registerFileRoutes(app, context);
  registerPortRoutes(app, context, https !== null);
  registerForkRunningRoute(app, context);
  registerTreeRoute(app, context);
  registerUiRoute(app);
  const e2b = await registerE2b(app, context, commands, { maxSandboxes: opts.e2bMaxSandboxes, log });
  const closePortConnections = attachPortUpgrades(app.server, {
    ctx: context,
    token,
    audit: (entry) => audit.write(entry),
    remoteOf: (req) => remoteOf(req.socket.remoteAddress),
  });

  let url: string;
  if (opts.socketPath) {
    await removeStaleSocket(opts.socketPath);
    // Created 0600 from the start: no window in which another user could connect.
    const umask = process.umask(0o177);
    try {
      await app.listen({ path: opts.socketPath });
    } finally {
      process.umask(umask);
    }
    await chmod(opts.socketPath, 0o600);
    url = `unix:${opts.socketPath}`;
  } else {
    await app.listen({ host, port: opts.port ?? 8889 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : (opts.port ?? 8889);
    url = `${https ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }
  await lock.setBind(url);
  return {
    url,
    app,
    context,
    close: async () => {
      // Fastify's close cuts long-lived streams, so they finish first.
      await commands.drain(DRAIN_TIMEOUT_MS);
      closePortConnections();
      e2b.close();
      // In-flight requests get a grace period; a connection that still holds
      // the close up after it (a client that left one half-sent) is cut.
      const closing = app.close();
      const grace = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
      await closing;
      clearTimeout(grace);
      await registry.detachAll();
      await engine.close();
      await audit.close();
      db.close();
      await lock.release();
    },
  };
}
