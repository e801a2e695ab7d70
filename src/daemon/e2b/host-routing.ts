// E2B's sandbox URLs name the sandbox in the host: `<port>-<sandboxId>.<domain>`.
// With a wildcard name for the domain pointing at the daemon, such requests
// reach the same routes as E2B_SANDBOX_URL's: the URL gets the sandbox
// prefix and the host's port and id become the headers the SDK would send.
import type { IncomingMessage } from 'node:http';
import { SANDBOX_PREFIX } from './target.js';

const SANDBOX_HOST = /^(\d{1,5})-([a-z0-9]{1,64})\./;

/** Fastify's rewriteUrl: the URL a request is routed by. */
export function routeBySandboxHost(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const match = SANDBOX_HOST.exec(req.headers.host ?? '');
  if (!match) return url;
  req.headers['e2b-sandbox-port'] = match[1];
  req.headers['e2b-sandbox-id'] = match[2];
  return `${SANDBOX_PREFIX}${url.startsWith('/') ? url : `/${url}`}`;
}
