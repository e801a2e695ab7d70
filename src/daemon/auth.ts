// Bearer-token auth (API-v1.md): the token comes from a file, is compared in
// constant time, and weak or placeholder tokens are refused at start-up.
import { bearerStatus } from '../util/bearer-token.js';
import { HttpError } from './http-errors.js';
import { SANDBOX_PREFIX } from './e2b/target.js';

export { loadToken } from '../util/bearer-token.js';

/** Throws a 401 HttpError unless the Authorization header carries `token`. */
export function checkBearer(header: string | undefined, token: string): void {
  const status = bearerStatus(header, token);
  if (status !== 'ok') throw new HttpError(401, `${status} bearer token`);
}

export function isOpenPath(url: string): boolean {
  const path = url.split('?')[0] ?? '';
  // E2B's sandbox routes: each call proves itself with its sandbox's own access token (e2b/target.ts).
  if (path.startsWith(`${SANDBOX_PREFIX}/`)) return true;
  // /ui is a page with no data in it; what it shows comes from calls that carry the token.
  return path === '/healthz' || path === '/healthz/' || path === '/ui';
}
