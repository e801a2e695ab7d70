// Bearer-token auth (API-v1.md): the token comes from a file, is compared in
// constant time, and weak or placeholder tokens are refused at start-up.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { HttpError } from './http-errors.js';

export async function loadToken(path: string): Promise<string> {
  const token = (
    await readFile(path, 'utf8').catch((err: Error) => {
      throw new InvalidArgumentError(`cannot read token file ${path}: ${err.message}`, 'token-file');
    })
  ).trim();
  if (Buffer.byteLength(token) < 16 || /^(REPLACE_ME|CHANGE_ME)/.test(token)) {
    throw new InvalidArgumentError(`token in ${path} is too weak or a placeholder`, 'token-file', {
      hint: 'use at least 16 random bytes, e.g. `head -c 32 /dev/urandom | base64 > TOKENFILE`',
    });
  }
  return token;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Throws a 401 HttpError unless the Authorization header carries `token`. */
export function checkBearer(header: string | undefined, token: string): void {
  const match = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  if (!match) throw new HttpError(401, 'missing bearer token');
  if (!timingSafeEqual(digest(match[1]!), digest(token))) throw new HttpError(401, 'invalid bearer token');
}

export function isOpenPath(url: string): boolean {
  const path = url.split('?')[0];
  return path === '/healthz' || path === '/healthz/';
}
