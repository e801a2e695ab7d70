// E2B's SDK, given only E2B_DOMAIN, names its hosts: `api.<domain>` for the
// control API and `<port>-<sandboxId>.<domain>` for a sandbox's ports
// (envd, the interpreter, and any server in it). With names under the domain
// reaching the daemon, such requests are routed to the same routes as
// E2B_API_URL's and E2B_SANDBOX_URL's: the URL gets the prefix, and a
// sandbox host's port and id become the headers the SDK would send.
import type { IncomingMessage } from 'node:http';
import { SANDBOX_PREFIX } from './target.js';

/** Fastify's rewriteUrl for an E2B domain: the URL a request is routed by. */
export function routeByE2bHost(domain: string, apiPrefix: string): (req: IncomingMessage) => string {
  const escaped = domain.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const sandboxHost = new RegExp(`^(\\d{1,5})-([a-z0-9]{1,64})\\.${escaped}$`);
  const apiHost = `api.${domain}`;
  return (req) => {
    const url = req.url ?? '/';
    const path = url.startsWith('/') ? url : `/${url}`;
    // The port is the daemon's, not part of the name.
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
    if (host === apiHost) return `${apiPrefix}${path}`;
    const match = sandboxHost.exec(host);
    if (!match) return url;
    req.headers['e2b-sandbox-port'] = match[1];
    req.headers['e2b-sandbox-id'] = match[2];
    return `${SANDBOX_PREFIX}${path}`;
  };
}
