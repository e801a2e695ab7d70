// GET /v1/tree: every snapshot under the one it was branched from, with the
// sandboxes running from each (what `forkd tree` prints), and /ui, the page
// that draws it.
import { SnapshotTree } from '../../api/schemas.js';
import { flattenTree } from '../../snapshot/tree.js';
import type { App, DaemonContext } from '../context.js';
import { UI_CSP, UI_HTML } from '../ui-page.js';

export function registerTreeRoute(app: App, ctx: DaemonContext): void {
  app.get('/v1/tree', { schema: { response: { 200: SnapshotTree } } }, async () => ({
    snapshots: flattenTree(await ctx.engine.snapshotTree()),
  }));
}

/** GET /ui: the tree as a page (open: the page holds no data; its calls carry the token). */
export function registerUiRoute(app: App): void {
  app.get('/ui', { schema: { hide: true } } as object, (_req, reply) =>
    reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', UI_CSP)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-store')
      .send(UI_HTML),
  );
}
