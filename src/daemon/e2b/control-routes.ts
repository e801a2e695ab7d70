// E2B's control API (where E2B_API_URL points: <daemon>/e2b): create,
// connect, list, info, kill, timeout, pause and fork, answered in the shapes
// the official SDK reads. The API key is the daemon's bearer token
// (X-API-KEY); errors are E2B's `{code, message}`.
import type { Static } from 'typebox';
import type { App } from '../context.js';
import type { E2bRecord } from './records.js';
import { MAX_FORK_COUNT, type E2bSandboxes } from './sandboxes.js';
import {
  E2bConnectBody,
  E2bCreateBody,
  E2bForkBody,
  E2bIdParams,
  E2bListQuery,
  E2bPauseBody,
  E2bTimeoutBody,
} from './schemas.js';
import { ENVD_VERSION, EnvdError } from './target.js';

/** What create, connect and fork answer per sandbox: enough for the SDK to reach envd. */
function created(r: E2bRecord): Record<string, unknown> {
  return {
    sandboxID: r.id,
    templateID: r.templateId,
    clientID: 'forkd',
    envdVersion: ENVD_VERSION,
    envdAccessToken: r.envdAccessToken,
    trafficAccessToken: r.trafficAccessToken,
    domain: null,
  };
}

export function detail(
  r: E2bRecord,
  sandbox: { info: { limits?: { memoryMib?: number | null; cpuCores?: number | null } } } | null,
): Record<string, unknown> {
  return {
    sandboxID: r.id,
    templateID: r.templateId,
    clientID: 'forkd',
    metadata: r.metadata,
    envdVersion: ENVD_VERSION,
    startedAt: new Date(r.startedAtMs).toISOString(),
    endAt: new Date(r.endAtMs).toISOString(),
    state: r.state,
    cpuCount: Math.max(1, Math.ceil(sandbox?.info.limits?.cpuCores ?? 1)),
    memoryMB: sandbox?.info.limits?.memoryMib ?? 0,
    diskSizeMB: 0,
    allowInternetAccess: r.internet,
    network: { allowPublicTraffic: r.publicTraffic },
    lifecycle: { onTimeout: r.autoPause ? 'pause' : 'kill', autoResume: false },
    volumeMounts: [],
    domain: null,
  };
}

/** `metadata` as the SDK sends it: a URL-encoded query string of key=value pairs. */
function metadataFilter(text: string | undefined): Array<[string, string]> {
  if (!text) return [];
  return [...new URLSearchParams(text).entries()].map(([k, v]) => [
    decodeURIComponent(k),
    decodeURIComponent(v),
  ]);
}

function listed(sandboxes: E2bSandboxes, q: Static<typeof E2bListQuery>): E2bRecord[] {
  const states = q.state ? q.state.split(',') : ['running', 'paused'];
  const wanted = metadataFilter(q.metadata);
  const after = q.startedAfter ? Date.parse(q.startedAfter) : NaN;
  const all = sandboxes
    .list()
    .filter(
      (r) =>
        states.includes(r.state) &&
        wanted.every(([k, v]) => r.metadata[k] === v) &&
        (!q.template || r.templateId === q.template) &&
        (Number.isNaN(after) || r.startedAtMs > after),
    )
    .sort((a, b) => a.startedAtMs - b.startedAtMs || a.id.localeCompare(b.id));
  return q.order === 'desc' ? all.reverse() : all;
}

export function registerControlRoutes(app: App, sandboxes: E2bSandboxes): void {
  app.post('/v2/sandboxes', { schema: { body: E2bCreateBody } }, async (req, reply) => {
    const b = req.body;
    if (b.mcp !== undefined && b.mcp !== null)
      throw new EnvdError(400, 'MCP gateways are not supported by forkd: create the sandbox without `mcp`');
    if (b.volumeMounts?.length)
      throw new EnvdError(
        400,
        'volumes are not supported by forkd: create the sandbox without `volumeMounts`',
      );
    if (b.autoResume?.enabled)
      throw new EnvdError(
        400,
        'autoResume is not supported by forkd: resume a paused sandbox with Sandbox.connect()',
      );
    if (b.autoPauseMemory === false)
      throw new EnvdError(400, 'forkd always pauses with memory: leave onTimeout.keepMemory unset or true');
    const network = b.network ?? {};
    if (
      ['allowOut', 'denyOut', 'rules', 'egressProxy'].some(
        (k) => k in network && network[k as keyof typeof network] !== undefined,
      )
    )
      throw new EnvdError(
        400,
        "egress rules are not served by forkd's E2B layer: use allowInternetAccess, or forkd's own API for allow-lists",
      );
    const record = await sandboxes.create({
      templateId: b.templateID,
      timeoutSecs: b.timeout,
      metadata: b.metadata,
      envs: b.envVars,
      internet: b.allow_internet_access,
      autoPause: b.autoPause,
      publicTraffic: network.allowPublicTraffic,
    });
    return reply.code(201).send(created(record));
  });

  app.get('/v2/sandboxes', { schema: { querystring: E2bListQuery } }, async (req, reply) => {
    const all = listed(sandboxes, req.query);
    const start = req.query.nextToken ? Number.parseInt(req.query.nextToken, 10) : 0;
    if (!Number.isInteger(start) || start < 0) throw new EnvdError(400, 'bad nextToken');
    const limit = req.query.limit ?? 100;
    const page = all.slice(start, start + limit);
    if (start + limit < all.length) void reply.header('x-next-token', String(start + limit));
    return page.map((r) => detail(r, sandboxes.liveSandbox(r)));
  });

  // The list before v2, for older SDKs: running sandboxes only.
  app.get('/sandboxes', async () =>
    listed(sandboxes, { state: 'running' }).map((r) => detail(r, sandboxes.liveSandbox(r))),
  );

  app.get('/sandboxes/:sandboxID', { schema: { params: E2bIdParams } }, async (req) => {
    const record = sandboxes.record(req.params.sandboxID);
    if (!record) throw new EnvdError(404, `sandbox ${req.params.sandboxID} not found`);
    return detail(record, sandboxes.liveSandbox(record));
  });

  app.delete('/sandboxes/:sandboxID', { schema: { params: E2bIdParams } }, async (req, reply) => {
    await sandboxes.kill(req.params.sandboxID);
    return reply.code(204).send();
  });

  app.post(
    '/sandboxes/:sandboxID/timeout',
    { schema: { params: E2bIdParams, body: E2bTimeoutBody } },
    async (req, reply) => {
      sandboxes.setTimeout(req.params.sandboxID, req.body.timeout);
      return reply.code(204).send();
    },
  );

  app.post(
    '/sandboxes/:sandboxID/pause',
    { schema: { params: E2bIdParams, body: E2bPauseBody } },
    async (req, reply) => {
      if (req.body?.memory === false)
        throw new EnvdError(400, 'forkd always pauses with memory: leave keepMemory unset or true');
      const paused = await sandboxes.pause(req.params.sandboxID);
      if (!paused) throw new EnvdError(409, `sandbox ${req.params.sandboxID} is already paused`);
      return reply.code(204).send();
    },
  );

  const connect = async (id: string, timeout: number | undefined, memory: boolean | undefined) => {
    if (memory === false)
      throw new EnvdError(400, 'forkd resumes with memory only: onResume "reboot" is not supported');
    return sandboxes.connect(id, timeout);
  };

  app.post(
    '/v2/sandboxes/:sandboxID/connect',
    { schema: { params: E2bIdParams, body: E2bConnectBody } },
    async (req, reply) => {
      const { record, resumed } = await connect(req.params.sandboxID, req.body?.timeout, req.body?.memory);
      return reply.code(resumed ? 201 : 200).send(created(record));
    },
  );

  // Resume before connect existed: only a paused sandbox.
  app.post(
    '/sandboxes/:sandboxID/resume',
    { schema: { params: E2bIdParams, body: E2bConnectBody } },
    async (req, reply) => {
      const record = sandboxes.record(req.params.sandboxID);
      if (record?.state === 'running')
        throw new EnvdError(409, `sandbox ${req.params.sandboxID} is already running`);
      const resumed = await connect(req.params.sandboxID, req.body?.timeout, req.body?.memory);
      return reply.code(201).send(created(resumed.record));
    },
  );

  app.post(
    '/sandboxes/:sandboxID/fork',
    { schema: { params: E2bIdParams, body: E2bForkBody } },
    async (req) => {
      const count = req.body?.count ?? 1;
      if (!Number.isInteger(count) || count < 1 || count > MAX_FORK_COUNT)
        throw new EnvdError(400, `count must be 1..${MAX_FORK_COUNT}, got ${count}`);
      const outcomes = await sandboxes.fork(req.params.sandboxID, count, req.body?.timeout);
      return outcomes.map((o) =>
        o.ok ? { sandbox: created(o.record) } : { error: { code: o.status, message: o.message } },
      );
    },
  );
}
