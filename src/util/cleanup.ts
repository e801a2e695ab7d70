// A process-wide registry of synchronous cleanups (kill a QEMU, remove a run
// dir) that must happen even when forkd is interrupted: run on normal exit, on
// SIGINT/SIGTERM/SIGHUP, and on an uncaught exception, so nothing is orphaned.

import { AbortedError } from '../errors.js';

type Cleanup = () => void;

const cleanups = new Set<Cleanup>();
let installed = false;
let drain: ((signal: NodeJS.Signals) => Promise<void>) | null = null;

function runAll(): void {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort: one failing cleanup must not stop the others
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      const finish = () => {
        runAll();
        // Re-raise with the default action so the exit status says what happened.
        process.removeAllListeners(sig);
        process.kill(process.pid, sig);
      };
      if (drain) {
        const draining = drain;
        drain = null; // a second signal does not wait
        draining(sig).then(finish, finish);
      } else finish();
    });
  }
}

/** Register a cleanup; returns a function that unregisters it (call it once the resource is released). */
export function onProcessExit(fn: Cleanup): () => void {
  install();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/**
 * A long-running process (the daemon) finishes its work before the exit
 * cleanups run: on the first SIGINT/SIGTERM/SIGHUP `fn` runs to completion.
 */
export function drainOnSignal(fn: (signal: NodeJS.Signals) => Promise<void>): void {
  install();
  drain = fn;
}

/** How long an interrupted command may take to undo its work before the process exits anyway. */
const UNWIND_MS = 10_000;

/**
 * Run a command's work with a signal that aborts on the first
 * SIGINT/SIGTERM/SIGHUP: the work unwinds through its own error path (a pack
 * removes its partial file, an unpack its staging dir) before the process
 * exits, instead of being cut off mid-write.
 */
export async function interruptible<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let settled: Promise<unknown> = Promise.resolve();
  const unwind = async (sig: NodeJS.Signals) => {
    controller.abort(new AbortedError(`interrupted by ${sig}`));
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, UNWIND_MS).unref())]);
  };
  drainOnSignal(unwind);
  const running = work(controller.signal);
  settled = running.catch(() => undefined);
  try {
    return await running;
  } finally {
    if (drain === unwind) drain = null;
  }
}
