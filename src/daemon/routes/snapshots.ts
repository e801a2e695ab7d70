// /v1/snapshots: list, create (boot + warm + freeze, from a recipe or from the
// caller's own kernel + ext4 paths), inspect, delete.
import Type from 'typebox';
import { createdAtUnix } from '../../snapshot/manifest.js';
import { assertValidTag } from '../../snapshot/tag.js';
import type { App, DaemonContext } from '../context.js';
import { HttpError } from '../http-errors.js';
import { InvalidArgumentError } from '../../errors.js';
import {
  CompactBody,
  CreateSnapshotBody,
  DeleteSnapshotQuery,
  ErrorBody,
  SnapshotDetails,
  SnapshotInfo,
  TagParams,
} from '../../api/schemas.js';
import { diffView, snapshotInfo } from '../views.js';
import { chainInfo } from '../../snapshot/chain.js';
import { syncSnapshotTable } from '../snapshot-sync.js';

const errors = { 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function registerSnapshotRoutes(app: App, ctx: DaemonContext): void {
  app.get('/v1/snapshots', { schema: { response: { 200: Type.Array(SnapshotInfo) } } }, async () =>
    ctx.branches.overlay(async () => (await ctx.engine.store.list()).map(snapshotInfo)),
  );

  app.post(
    '/v1/snapshots',
    { schema: { body: CreateSnapshotBody, response: { 201: SnapshotInfo, ...errors } } },
    async (req, reply) => {
      const body = req.body;
      assertValidTag(body.tag);
      const request = { tag: body.tag, memoryMib: body.mem_mib };
      if (body.kernel !== undefined || body.rootfs !== undefined) {
        // The original forkd's form (its MCP create_snapshot, its SDKs): the caller's own files.
        if (body.image !== undefined) {
          throw new InvalidArgumentError(
            'pass either "image" (a recipe) or "kernel" and "rootfs", not both',
            'image',
          );
        }
        if (body.kernel === undefined || body.rootfs === undefined) {
          const missing = body.kernel === undefined ? 'kernel' : 'rootfs';
          throw new InvalidArgumentError(
            `"kernel" and "rootfs" go together: "${missing}" is missing`,
            missing,
            {
              hint: 'pass both paths, or "image" with a recipe name (tiny, python-numpy, playwright-browser, …) instead',
            },
          );
        }
        await ctx.engine.createSnapshotFromFiles({
          ...request,
          kernelPath: body.kernel,
          rootfsPath: body.rootfs,
        });
      } else {
        await ctx.engine.createSnapshot({ ...request, recipe: body.image ?? 'python-numpy' });
      }
      await syncSnapshotTable(ctx.engine, ctx.db);
      const info = snapshotInfo(await ctx.engine.store.get(body.tag));
      // The original waited a fixed boot_wait_secs before freezing; forkd freezes when the
      // agent and its warm runtime report ready, and never runs the image's own init, so
      // there is nothing further to wait for.
      if (body.boot_wait_secs !== undefined)
        info.warning = 'boot_wait_secs ignored: the snapshot was taken when the guest reported ready';
      return reply.code(201).send(info);
    },
  );

  app.get(
    '/v1/snapshots/:tag/info',
    { schema: { params: TagParams, response: { 200: SnapshotDetails, ...errors } } },
    async (req) => {
      const { dir, manifest } = await ctx.engine.store.getReady(req.params.tag);
      const chain = await chainInfo(ctx.engine.store, manifest.tag);
      return {
        tag: manifest.tag,
        dir,
        created_at_unix: createdAtUnix(manifest),
        memory_logical_bytes: manifest.memory.logicalBytes,
        memory_physical_bytes: manifest.memory.physicalBytes,
        vmstate_bytes: manifest.vmstate.bytes,
        ...(manifest.parent
          ? { parent_tag: manifest.parent.tag, parent_content_hash: manifest.parent.contentHash }
          : {}),
        ...(manifest.contentHash ? { content_hash: manifest.contentHash } : {}),
        chain_depth: manifest.parent ? Math.max(chain.depth, 1) : 0,
        dependents: chain.dependents,
        ancestors: chain.ancestors,
        ...diffView(manifest),
        ...(chain.problem ? { warning: `broken chain: ${chain.problem}` } : {}),
      };
    },
  );

  app.post(
    '/v1/snapshots/:tag/compact',
    { schema: { params: TagParams, body: CompactBody, response: { 200: SnapshotInfo, ...errors } } },
    async (req) => {
      const from = assertValidTag(req.params.tag);
      const to = assertValidTag(req.body.to, 'to');
      // Every snapshot keeps flat files: compacting is a hard-linked copy without the chain.
      await ctx.engine.compactSnapshot(from, to);
      await syncSnapshotTable(ctx.engine, ctx.db);
      return snapshotInfo(await ctx.engine.store.get(to));
    },
  );

  app.delete(
    '/v1/snapshots/:tag',
    {
      schema: {
        params: TagParams,
        querystring: DeleteSnapshotQuery,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      const { tag } = req.params;
      assertValidTag(tag);
      if (req.query.cascade && req.query.force)
        throw new HttpError(400, 'use either cascade=true or force=true, not both');
      const force = Boolean(req.query.force || req.query.cascade);
      await ctx.engine.removeSnapshot(tag, {
        force,
        cascade: req.query.cascade ?? false,
        // Forced: the sandboxes forked from what goes are stopped first (after the 404 and 409 checks).
        beforeRemove: async (doomed) => {
          if (!force) return;
          const users = ctx.registry.list().filter((s) => doomed.includes(s.info.snapshotTag));
          await Promise.all(users.map((s) => ctx.registry.kill(s.id)));
        },
      });
      await syncSnapshotTable(ctx.engine, ctx.db);
      return reply.code(204).send(null);
    },
  );
}
