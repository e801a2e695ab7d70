// /v1/sandboxes: fork children from a snapshot, run commands and code in
// them, kill them. Children are detached from the daemon's process so they
// survive a daemon restart.
import Type from 'typebox';
import { checkChildCount } from '../../engine/index.js';
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
} from '../../api/schemas.js';
import { sandboxInfo } from '../views.js';

/** The longest exec the API runs (a request must not hold a connection forever). */
export const MAX_EXEC_TIMEOUT_SECS = 3600;

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 500: ErrorBody };

export function registerSandboxRoutes(app: App, ctx: DaemonContext): void {
  app.get('/v1/sandboxes', { schema: { response: { 200: Type.Array(SandboxInfo) } } }, () =>
    ctx.registry.list().map(sandboxInfo),
  );

  app.post(
    '/v1/sandboxes',
    { schema: { body: CreateSandboxesBody, response: { 201: Type.Array(SandboxInfo), ...errors } } },
    async (req, reply) => {
      const body = req.body;
      assertValidTag(body.snapshot_tag, 'snapshot_tag');
      const n = checkChildCount(body.n ?? 1);
      const timer = ctx.metrics.spawnSeconds.startTimer();
      const result = await ctx.engine.fork({
        tag: body.snapshot_tag,
        n,
        memoryLimitMib: body.memory_limit_mib ?? null,
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
      return reply.code(201).send(sandboxes.map(sandboxInfo));
    },
  );

  app.get(
    '/v1/sandboxes/:id',
    { schema: { params: IdParams, response: { 200: SandboxInfo, ...errors } } },
    (req) => sandboxInfo(ctx.registry.get(req.params.id)),
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
      const ping = await ctx.registry.get(req.params.id).agent.ping({ timeoutMs: 10_000 });
      return {
        pong: true as const,
        agent_version: ping.agent,
        uptime_ms: ping.uptimeMs,
        runtime: ping.runtime ? { kind: ping.runtime.kind, ready: ping.runtime.ready } : null,
      };
    },
  );

  app.post(
    '/v1/sandboxes/:id/exec',
    { schema: { params: IdParams, body: ExecBody, response: { 200: ExecResult, ...errors } } },
    async (req) => {
      const sandbox = ctx.registry.get(req.params.id);
      if (req.body.args.length === 0 || req.body.args[0] === '')
        throw new HttpError(400, 'args must not be empty');
      const secs = Math.min(req.body.timeout_secs ?? 30, MAX_EXEC_TIMEOUT_SECS);
      const timer = ctx.metrics.execSeconds.startTimer();
      const r = await sandbox.agent.exec({ args: req.body.args, timeoutMs: secs * 1000 }, undefined, {
        timeoutMs: secs * 1000 + 5000,
      });
      timer();
      return { stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), exit_code: r.exitCode };
    },
  );

  app.post(
    '/v1/sandboxes/:id/eval',
    { schema: { params: IdParams, body: EvalBody, response: { 200: EvalResult, ...errors } } },
    async (req) => {
      const r = await ctx.registry.get(req.params.id).agent.eval(req.body.code, { timeoutMs: 300_000 });
      return {
        result: r.error === null ? (r.result ?? r.repr) : null,
        error: r.error,
        exit_code: r.exitCode,
      };
    },
  );
}
