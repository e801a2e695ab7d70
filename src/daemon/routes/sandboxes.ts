// /v1/sandboxes: fork children from a snapshot, run commands and code in
// them, kill them. Children are detached from the daemon's process so they
// survive a daemon restart.
import Type, { type Static } from 'typebox';
import { checkChildCount, parseEgress } from '../../engine/index.js';
import { errorMessage } from '../../errors.js';
import { assertValidTag } from '../../snapshot/tag.js';
import type { App, DaemonContext } from '../context.js';
import { HttpError } from '../http-errors.js';
import {
  CreateSandboxesBody,
  ErrorBody,
  EvalBody,
  EvalResult,
  ExecBody,
  ExecResult,
  IdParams,
  PingResult,
  SandboxInfo,
  BranchBody,
  EgressBody,
  SnapshotInfo,
} from '../../api/schemas.js';
import { limitsFromBody, sandboxInfo, snapshotInfo } from '../views.js';
import { BranchJobs } from '../branch-jobs.js';
import { clientGone } from '../client-gone.js';
import { execResultBody, outputLimit } from '../exec-output.js';
import { syncSnapshotTable } from '../snapshot-sync.js';

/** The longest exec the API runs (a request must not hold a connection forever). */
export const MAX_EXEC_TIMEOUT_SECS = 3600;

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };

/** What a branch request asked for, checked for contradictions (API-v1: 400 conflicting options). */
function branchMode(body: BranchBody): 'full' | 'diff' | 'live' {
  const implied = [body.diff ? 'diff' : null, body.live ? 'live' : null].filter(
    (m): m is 'diff' | 'live' => m !== null,
  );
  if (implied.length > 1) throw new HttpError(400, 'conflicting options: diff and live are both true');
  if (body.mode && implied[0] && body.mode !== implied[0]) {
    throw new HttpError(400, `conflicting options: mode ${body.mode} with ${implied[0]}: true`);
  }
  return body.mode ?? implied[0] ?? 'live';
}

export function registerSandboxRoutes(app: App, ctx: DaemonContext): void {
  app.post(
    '/v1/sandboxes/:id/branch',
    {
      schema: {
        params: IdParams,
        body: BranchBody,
        response: { 201: SnapshotInfo, 202: SnapshotInfo, ...errors, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const body = req.body ?? {};
      const mode = branchMode(body);
      const sandbox = ctx.registry.get(req.params.id);
      const tag = body.tag ?? BranchJobs.defaultTag(sandbox);
      assertValidTag(tag);
      if (body.parent_tag !== undefined && body.parent_tag !== sandbox.info.snapshotTag) {
        throw new HttpError(
          400,
          `parent_tag ${body.parent_tag} is not the sandbox's snapshot (${sandbox.info.snapshotTag})`,
        );
      }
      const job = await ctx.branches.start(sandbox, tag, { diff: mode === 'diff' });
      // Every mode copies memory live (the sandbox keeps running); diff also keeps a diff link.
      const note =
        mode === 'full'
          ? 'mode full ran as a live branch: forkd copies memory live and stores a self-contained snapshot'
          : undefined;
      if (body.wait === false) {
        job.done.catch(() => undefined);
        return reply.code(202).send({
          tag,
          dir: ctx.engine.dataDir.snapshotDir(tag),
          created_at_unix: Math.floor(Date.now() / 1000),
          status: 'writing',
          bootable: false,
          branched_from: sandbox.id,
          ...(note ? { warning: note } : {}),
        });
      }
      const result = await job.done;
      await syncSnapshotTable(ctx.engine, ctx.db);
      const info = snapshotInfo(await ctx.engine.store.get(result.manifest.tag));
      const diff =
        info.diff_ms !== undefined || !body.measure_diff
          ? {}
          : {
              diff_ms: result.timings.finishMs,
              diff_physical_bytes: result.manifest.memory.physicalBytes,
              diff_logical_bytes: result.manifest.memory.logicalBytes,
            };
      return reply.code(201).send({ ...info, ...diff, ...(note ? { warning: note } : {}) });
    },
  );

  app.get('/v1/sandboxes', { schema: { response: { 200: Type.Array(SandboxInfo) } } }, () =>
    Promise.all(ctx.registry.list().map((s) => sandboxInfo(s, ctx.branches.branchesOf(s.id)))),
  );

  app.post(
    '/v1/sandboxes',
    { schema: { body: CreateSandboxesBody, response: { 201: Type.Array(SandboxInfo), ...errors } } },
    async (req, reply) => {
      const body = req.body;
      assertValidTag(body.snapshot_tag, 'snapshot_tag');
      ctx.branches.assertNotWriting(body.snapshot_tag);
      const n = checkChildCount(body.n ?? 1);
      const timer = ctx.metrics.spawnSeconds.startTimer();
      const result = await ctx.engine.fork({
        tag: body.snapshot_tag,
        n,
        egress: parseEgress(body.egress ?? 'none'),
        limits: limitsFromBody(body),
        prewarm: body.prewarm ?? false,
        detach: true,
      });
      const failed = result.children.find((c) => !c.ok);
      if (failed && !failed.ok) {
        // All or nothing: a caller asking for n children gets n or an error.
        await Promise.all(result.children.flatMap((c) => (c.ok ? [c.sandbox.kill()] : [])));
        throw new HttpError(500, `child ${failed.index} failed: ${errorMessage(failed.error)}`);
      }
      const sandboxes = result.children.flatMap((c) => (c.ok ? [c.sandbox] : []));
      sandboxes.forEach((s) => ctx.registry.add(s));
      timer();
      return reply.code(201).send(await Promise.all(sandboxes.map((s) => sandboxInfo(s))));
    },
  );

  app.get(
    '/v1/sandboxes/:id',
    { schema: { params: IdParams, response: { 200: SandboxInfo, ...errors } } },
    (req) => {
      const sandbox = ctx.registry.get(req.params.id);
      return sandboxInfo(sandbox, ctx.branches.branchesOf(sandbox.id));
    },
  );

  app.put(
    '/v1/sandboxes/:id/egress',
    { schema: { params: IdParams, body: EgressBody, response: { 200: SandboxInfo, ...errors } } },
    async (req) => {
      const sandbox = ctx.registry.get(req.params.id);
      await ctx.engine.setEgress(sandbox, parseEgress(req.body.egress));
      return sandboxInfo(sandbox, ctx.branches.branchesOf(sandbox.id));
    },
  );

  app.delete(
    '/v1/sandboxes/:id',
    { schema: { params: IdParams, response: { 204: Type.Null(), ...errors } } },
    async (req, reply) => {
      await ctx.registry.kill(req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/v1/sandboxes/:id/ping',
    { schema: { params: IdParams, response: { 200: PingResult, ...errors } } },
    async (req) => {
      const agent = ctx.registry.get(req.params.id).agent;
      const ping = await agent.ping({ timeoutMs: 10_000 });
      const python = ping.runtime?.kind === 'python' && ping.runtime.ready;
      // The original reports numpy's version; a warm Python runtime answers it in milliseconds.
      const numpy = python
        ? await agent
            .eval("numpy.__version__ if 'numpy' in globals() else None", { timeoutMs: 5_000 })
            .then((r) => (typeof r.result === 'string' ? r.result : null))
            .catch(() => null)
        : null;
      return {
        pong: true as const,
        numpy_version: numpy,
        pid: ping.pid,
        // Always a string, as the original's (whose agent was Python): 'none' without a runtime.
        agent_lang: ping.runtime?.kind ?? 'none',
        warmup_ready: ping.runtime?.ready ?? false,
        agent_version: ping.agent,
        uptime_ms: ping.uptimeMs,
        runtime: ping.runtime ? { kind: ping.runtime.kind, ready: ping.runtime.ready } : null,
      };
    },
  );

  app.post(
    '/v1/sandboxes/:id/exec',
    { schema: { params: IdParams, body: ExecBody, response: { 200: ExecResult, ...errors } } },
    async (req, reply) => {
      const sandbox = ctx.registry.get(req.params.id);
      if (req.body.args.length === 0 || req.body.args[0] === '')
        throw new HttpError(400, 'args must not be empty');
      const secs = Math.min(req.body.timeout_secs ?? 30, MAX_EXEC_TIMEOUT_SECS);
      const maxOutputBytes = outputLimit(ctx, req.body.max_output_bytes);
      const timer = ctx.metrics.execSeconds.startTimer();
      const r = await sandbox.agent.exec(
        { args: req.body.args, timeoutMs: secs * 1000, maxOutputBytes },
        undefined,
        {
          timeoutMs: secs * 1000 + 5000,
          signal: clientGone(reply),
        },
      );
      timer();
      // A stream bypasses the response serialiser; the schema still documents the body.
      const body = execResultBody(r) as unknown as Static<typeof ExecResult>;
      return reply.type('application/json').send(body);
    },
  );

  app.post(
    '/v1/sandboxes/:id/eval',
    { schema: { params: IdParams, body: EvalBody, response: { 200: EvalResult, ...errors } } },
    async (req, reply) => {
      const r = await ctx.registry
        .get(req.params.id)
        .agent.eval(req.body.code, { timeoutMs: 300_000, signal: clientGone(reply) });
      return {
        result: r.error === null ? r.repr : null,
        value: r.error === null ? r.result : null,
        error: r.error,
        exit_code: r.exitCode,
      };
    },
  );
}
