// Health, version, metrics and the OpenAPI document.
import { FORKD_VERSION } from '../../version.js';
import type { App, DaemonContext } from '../context.js';
import { Health, Version } from '../../api/schemas.js';

export function registerMetaRoutes(app: App, ctx: DaemonContext): void {
  for (const url of ['/healthz', '/healthz/']) {
    app.get(url, { schema: { response: { 200: Health } } }, () => ({ ok: true }));
  }
  app.get('/version', { schema: { response: { 200: Version } } }, () => ({
    version: FORKD_VERSION,
    api: 'v1' as const,
  }));
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', ctx.metrics.registry.contentType);
    return ctx.metrics.registry.metrics();
  });
}
