// One daemon per data dir. `forkd serve` holds <data-dir>/daemon.json (made
// with O_EXCL) naming its pid and bind address; a second daemon, or a local
// command that would take the daemon's sandboxes from it (attach, kill,
// cleanup), fails at once naming the owner. Without it a second daemon spent
// 10 s per sandbox failing to re-attach (the first holds their QMP sockets)
// and then served anyway. The pid is checked together with its start time, so
// a crashed daemon's file never blocks a later one, even if its pid is reused.
import { readFileSync, rmSync } from 'node:fs';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError } from '../errors.js';
import type { DataDir } from '../snapshot/data-dir.js';
import { isProcessAlive } from '../snapshot/lock.js';
import { onProcessExit } from '../util/cleanup.js';

export const DAEMON_LOCK_FILE = 'daemon.json';

export interface DaemonOwner {
  pid: number;
  /** The pid's start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  startTicks: number | null;
  /** Where it serves (`http://127.0.0.1:8889`, `unix:/path`), or "starting". */
  bind: string;
  startedAt: string;
}

export interface DaemonLock {
  readonly owner: DaemonOwner;
  /** Record the address once it is known (a port 0 bind learns it from listen). */
  setBind(bind: string): Promise<void>;
  release(): Promise<void>;
}

/** What /proc says of a process: its state letter and its start time in clock ticks since boot. */
function procStat(pid: number): { state: string; startTicks: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const startTicks = Number(fields[19]);
    return { state: fields[0] ?? '?', startTicks: Number.isFinite(startTicks) ? startTicks : -1 };
  } catch {
    return null;
  }
}

/** Start time of a process, to tell it from a later one with the same pid. */
export function processStartTicks(pid: number): number | null {
  return procStat(pid)?.startTicks ?? null;
}

function lockPath(dataDir: DataDir): string {
  return join(dataDir.root, DAEMON_LOCK_FILE);
}

function isOwnerAlive(owner: DaemonOwner): boolean {
  if (!isProcessAlive(owner.pid)) return false;
  const stat = procStat(owner.pid);
  if (!stat) return true; // no /proc to ask: the pid answers, so count it alive
  // A killed daemon its parent has not reaped yet is a zombie: it owns nothing.
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return owner.startTicks === null || stat.startTicks === owner.startTicks;
}

function parseOwner(text: string): DaemonOwner | null {
  try {
    const o = JSON.parse(text) as Partial<DaemonOwner>;
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return null;
    return {
      pid: o.pid,
      startTicks: typeof o.startTicks === 'number' ? o.startTicks : null,
      bind: typeof o.bind === 'string' ? o.bind : 'unknown',
      startedAt: typeof o.startedAt === 'string' ? o.startedAt : 'unknown',
    };
  } catch {
    return null;
  }
}

/** The live daemon that owns this data dir, if any (a stale record is not an owner). */
export async function daemonOwner(dataDir: DataDir): Promise<DaemonOwner | null> {
  const text = await readFile(lockPath(dataDir), 'utf8').catch(() => null);
  const owner = text === null ? null : parseOwner(text);
  return owner && isOwnerAlive(owner) ? owner : null;
}

function ownedError(dataDir: DataDir, owner: DaemonOwner, doing: string): ConflictError {
  const at = owner.bind === 'starting' ? 'still starting' : `serving ${owner.bind}`;
  return new ConflictError(
    `${doing}: data dir ${dataDir.root} is owned by forkd serve (pid ${owner.pid}, ${at}, since ${owner.startedAt})`,
    {
      hint:
        owner.bind === 'starting' || owner.bind.startsWith('unix:')
          ? 'stop that daemon, or use another --data-dir'
          : `talk to it (--url ${owner.bind}, or FORKD_URL), stop it, or use another --data-dir`,
    },
  );
}

/**
 * Refuse a local action on sandboxes while another process's daemon owns
 * them. The daemon itself (this process) passes.
 */
export async function assertNoOtherDaemon(dataDir: DataDir, doing: string): Promise<void> {
  const owner = await daemonOwner(dataDir);
  if (owner && owner.pid !== process.pid) throw ownedError(dataDir, owner, doing);
}

/** Take the data dir for a daemon; throws ConflictError naming the live owner. */
export async function claimDataDir(dataDir: DataDir): Promise<DaemonLock> {
  const path = lockPath(dataDir);
  await mkdir(dataDir.root, { recursive: true });
  const owner: DaemonOwner = {
    pid: process.pid,
    startTicks: processStartTicks(process.pid),
    bind: 'starting',
    startedAt: new Date().toISOString(),
  };
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o644);
      try {
        await handle.writeFile(JSON.stringify(owner) + '\n');
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const existing = parseOwner(await readFile(path, 'utf8').catch(() => ''));
      if (existing && isOwnerAlive(existing)) throw ownedError(dataDir, existing, 'cannot start a daemon');
      // A record half-written by a daemon starting this instant reads as junk: look once more.
      if (!existing && attempt === 0) {
        await new Promise((resolve) => setTimeout(resolve, 50));
        continue;
      }
      if (attempt > 2) throw new ConflictError(`cannot take ${path}: it keeps changing`);
      await rm(path, { force: true }); // its daemon died
    }
  }
  const forget = onProcessExit(() => releaseIfOurs(path));
  let released = false;
  return {
    owner,
    setBind: async (bind) => {
      owner.bind = bind;
      const temp = `${path}.${process.pid}.tmp`;
      await writeFile(temp, JSON.stringify(owner) + '\n', { mode: 0o644 });
      await rename(temp, path);
    },
    release: async () => {
      if (released) return;
      released = true;
      forget();
      releaseIfOurs(path);
    },
  };
}

function releaseIfOurs(path: string): void {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return;
  }
  if (parseOwner(text)?.pid === process.pid) rmSync(path, { force: true });
}
