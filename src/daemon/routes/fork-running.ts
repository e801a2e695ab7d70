// POST /v1/sandboxes/:id/fork: a time-travel fork. The running sandbox is
// branched live (it pauses for milliseconds and goes on), k children are
// restored from that moment, each handed its variant before it runs, and the
// intermediate snapshot is removed unless kept. All or nothing: when any
// step fails, the children made so far are killed and the snapshot removed.
// With `score` it is best of k: every child runs the scoring step at once,
// the answer ranks them, and all but the best `keep` are killed.
import { randomBytes } from 'node:crypto';
import { errorMessage } from '../../errors.js';
import { variantsFor, type Sandbox, type VarySpec } from '../../engine/index.js';
import { assertValidTag } from '../../snapshot/tag.js';
import { ErrorBody, ForkRunningBody, ForkRunningResult, IdParams } from '../../api/schemas.js';
import type { App, DaemonContext } from '../context.js';
import { HttpError } from '../http-errors.js';
import { syncSnapshotTable } from '../snapshot-sync.js';
import { sandboxInfo } from '../views.js';
import { checkScoreStep, rankByScore } from '../best-of.js';

function defaultTag(source: Sandbox): string {
  return `${source.id.slice(0, 40)}-fork-${randomBytes(4).toString('hex')}`;
}

export function registerForkRunningRoute(app: App, ctx: DaemonContext): void {
  app.post(
    '/v1/sandboxes/:id/fork',
    {
      schema: {
        params: IdParams,
        body: ForkRunningBody,
        response: { 201: ForkRunningResult, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const body = req.body;
      // Every check that needs no work comes first: bad input leaves nothing behind.
      const variants = variantsFor(body.k, body.vary as VarySpec | undefined);
      const source = ctx.registry.get(req.params.id);
      const tag = body.tag ?? defaultTag(source);
      assertValidTag(tag);
      const keep = body.keep_snapshot ?? false;
      if (body.score) checkScoreStep(body.score, body.keep ?? 1, variants.length);
      else if (body.keep !== undefined)
        throw new HttpError(400, 'keep needs score: the best `keep` by what?');
      const started = Date.now();
      const branch = await (await ctx.branches.start(source, tag)).done;
      const branchMs = Date.now() - started;
      let children: Sandbox[] = [];
      try {
        const result = await ctx.engine.fork({
          tag,
          n: variants.length,
          vary: (i) => variants[i],
          egress: source.info.egress,
          limits: source.info.limits,
          detach: true,
        });
        children = result.children.flatMap((c) => (c.ok ? [c.sandbox] : []));
        const failed = result.children.find((c) => !c.ok);
        if (failed && !failed.ok)
          throw new HttpError(500, `child ${failed.index} failed: ${errorMessage(failed.error)}`);
      } catch (err) {
        await Promise.all(children.map((c) => c.kill()));
        await ctx.engine.store.remove(tag).catch(() => undefined);
        await syncSnapshotTable(ctx.engine, ctx.db);
        throw err;
      }
      children.forEach((c) => ctx.registry.add(c));
      // The children hold the snapshot's files open: removing the tag frees the name, not their memory.
      if (!keep) await ctx.engine.store.remove(tag);
      await syncSnapshotTable(ctx.engine, ctx.db);
      const base = {
        source_id: source.id,
        snapshot_tag: tag,
        snapshot_kept: keep,
        pause_ms: branch.timings.pauseMs,
        branch_ms: branchMs,
      };
      const variantOf = new Map(children.map((c, i) => [c.id, variants[i] ?? {}]));
      if (body.score) {
        const ranked = await rankByScore(children, body.score);
        const spawnMs = Date.now() - started - branchMs;
        const infos = await Promise.all(ranked.map((r) => sandboxInfo(r.sandbox)));
        const best = body.keep ?? 1;
        await Promise.all(
          ranked.slice(best).map((r) => ctx.registry.kill(r.sandbox.id).catch(() => undefined)),
        );
        return reply.code(201).send({
          ...base,
          spawn_ms: spawnMs,
          children: ranked.map((r, i) => ({
            ...infos[i]!,
            variant: variantOf.get(r.sandbox.id) ?? {},
            score: r.score,
            score_error: r.scoreError,
            kept: i < best,
          })),
        });
      }
      const infos = await Promise.all(children.map((c) => sandboxInfo(c)));
      return reply.code(201).send({
        ...base,
        spawn_ms: Date.now() - started - branchMs,
        children: infos.map((info, i) => ({ ...info, variant: variants[i] ?? {} })),
      });
    },
  );
}
