// A lock per tag, across processes: an O_EXCL lock file holding the owner's
// pid. A lock whose owner is dead is stale and taken over, so a crash never
// wedges a tag. Held while a snapshot is written or removed.
import { rmSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConflictError } from '../errors.js';

export interface TagLock {
  release(): Promise<void>;
  /** For exit hooks, where nothing asynchronous runs any more. */
  releaseSync(): void;
}

export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function lockFile(path: string, what: string): Promise<TagLock> {
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await rm(path, { force: true });
        },
        releaseSync: () => {
          if (released) return;
          released = true;
          rmSync(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(owner) && owner > 0 && isProcessAlive(owner) && owner !== process.pid) {
        throw new ConflictError(`${what} is busy (locked by process ${owner})`, {
          hint: 'wait for the other forkd command to finish',
        });
      }
      if (owner === process.pid) throw new ConflictError(`${what} is busy (an operation on it is in flight)`);
      await rm(path, { force: true }); // stale: its owner died
    }
  }
  throw new ConflictError(`${what} is busy`);
}

/**
 * Like lockFile, but waits (polling) while another holder is at work, up to
 * `timeoutMs`: for short critical sections many callers share, such as
 * rewriting a hub's index.
 */
export async function lockFileWaiting(path: string, what: string, timeoutMs = 30_000): Promise<TagLock> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      return await lockFile(path, what);
    } catch (err) {
      if (!(err instanceof ConflictError) || Date.now() + delay > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
