// GET /v1/tree: every snapshot under the one it was branched from, with the
// sandboxes running from each (what `forkd tree` prints).
import { SnapshotTree } from '../../api/schemas.js';
import { flattenTree } from '../../snapshot/tree.js';
import type { App, DaemonContext } from '../context.js';

export function registerTreeRoute(app: App, ctx: DaemonContext): void {
  app.get('/v1/tree', { schema: { response: { 200: SnapshotTree } } }, async () => ({
    snapshots: flattenTree(await ctx.engine.snapshotTree()),
  }));
}
