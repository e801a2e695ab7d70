// Pausing and resuming a VM, and asking whether it runs. Resume knows the one
// trap QEMU sets here: after a migration completes, QEMU emits MIGRATION
// "completed" from its migration thread a moment before that thread moves the
// run state from finish-migrate to postmigrate, and a `cont` in between fails
// with "Migration is not finalized yet" (seen in 1 of 4 concurrent branches).
// The event is not the condition `cont` needs; the run state is, so resume
// waits for it.
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import type { QmpClient, QmpEvent } from './qmp.js';

export interface RunState {
  running: boolean;
  /** QEMU's run state: running, paused, finish-migrate, postmigrate, inmigrate… */
  status: string;
}

export function queryRunState(qmp: QmpClient, opts: CallOptions = {}): Promise<RunState> {
  return qmp.execute<RunState>('query-status', undefined, opts);
}

/** Stop the guest's CPUs (device state can then be saved). */
export async function pauseVm(qmp: QmpClient, opts: CallOptions = {}): Promise<void> {
  await qmp.execute('stop', undefined, opts);
}

/** The wall-clock time (ms) an event carries, or `fallback`. */
export function eventTimeMs(e: QmpEvent | undefined, fallback: number): number {
  return e?.timestamp ? e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000 : fallback;
}

/**
 * Run the guest's CPUs again, once QEMU has finalized any migration that
 * paused it. Resolves with the time QEMU stamped on its RESUME event.
 */
export async function resumeVm(qmp: QmpClient, opts: CallOptions = {}): Promise<{ resumedAtMs: number }> {
  const signal = deadlineSignal({ signal: opts.signal, timeoutMs: opts.timeoutMs ?? 30_000 }, 'resuming');
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const { status } = await queryRunState(qmp, { signal });
    if (status !== 'finish-migrate') break;
    await sleep(delay, signal);
  }
  const resumed = qmp.waitForEvent('RESUME', () => true, { signal });
  resumed.catch(() => undefined);
  await qmp.execute('cont', undefined, { signal });
  const event = await resumed.catch(() => undefined);
  return { resumedAtMs: eventTimeMs(event, Date.now()) };
}

/**
 * forkd pauses a running sandbox only inside a live branch. One found paused
 * was left so by a process that died mid-branch (its live copy may even have
 * completed into a writer that is gone): cancel that copy and resume.
 * Never throws for a VM that is already running.
 */
export async function resumeIfLeftPaused(qmp: QmpClient, opts: CallOptions = {}): Promise<void> {
  const state = await queryRunState(qmp, opts);
  if (state.running) return;
  await qmp.execute('migrate_cancel', undefined, opts).catch(() => undefined);
  await resumeVm(qmp, opts);
}
