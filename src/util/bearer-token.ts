// Bearer tokens for forkd's HTTP servers (the daemon and the hub): read from
// a file, weak or placeholder tokens refused, compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';

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

/** Whether an Authorization header carries `token`. */
export function bearerStatus(header: string | undefined, token: string): 'ok' | 'missing' | 'invalid' {
  const match = header ? /^Bearer\s+(.+)$/i.exec(header.trim()) : null;
  if (!match) return 'missing';
  return timingSafeEqual(digest(match[1]!), digest(token)) ? 'ok' : 'invalid';
}
