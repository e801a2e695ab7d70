// Live copy: QEMU migration from a running VM into a paused "writer" QEMU
// over a unix socket, while the guest keeps running. When it completes QEMU
// has paused the source (for the last few milliseconds of dirty pages); the
// caller decides what to do in that pause, then resumes it (run-state.ts).
import { chmod } from 'node:fs/promises';
import { QmpError, ResourceExhaustedError } from '../errors.js';
import { sleep, type CallOptions } from '../util/abort.js';
import { expectCompleted, setMigrationCapabilities, waitMigrationEnd } from './migration.js';
import { unlessExited, type QemuProcess } from './process.js';
import type { QmpClient, QmpEvent } from './qmp.js';
import { eventTimeMs, resumeIfLeftPaused } from './run-state.js';

/** A QEMU and its control channel. */
export interface VmChannels {
  qmp: QmpClient;
  process: QemuProcess;
}

export interface LiveCopyTuning {
  maxBandwidthBytes: number;
  /** The pause QEMU aims for: it stops the source when what is left fits in it. */
  downtimeLimitMs: number;
  autoConverge: boolean;
  /** Double the downtime limit this often while the copy has not converged (0: never). */
  relaxEveryMs: number;
  /** The downtime limit relaxing stops at. */
  maxDowntimeLimitMs: number;
}

/** Make a writer QEMU (started with `-incoming defer`) wait for a live copy on `socketPath`. */
export async function acceptLiveCopy(
  target: QmpClient,
  socketPath: string,
  opts: CallOptions = {},
): Promise<void> {
  await setMigrationCapabilities(target, { ignoreShared: false }, opts);
  await target.execute('migrate-incoming', { uri: `unix:${socketPath}` }, opts);
  // The source runs as another uid: it needs write permission on the socket to connect.
  await chmod(socketPath, 0o666);
}

export interface LiveCopy {
  /** When QEMU stopped the source, by QEMU's clock (ms since the epoch). */
  stoppedAtMs: number;
  /** From the start of the copy to its completion. */
  copyMs: number;
  /** Settles when the writer has taken in the whole copy; throws if it did not. */
  received: Promise<void>;
}

/**
 * Copy `source` into `target` (which acceptLiveCopy prepared) while the
 * source runs. Resolves when the copy is complete and the source is paused
 * with the run state finalized; rejects (leaving the source to
 * abandonLiveCopy) if the copy fails or either QEMU dies.
 */
export async function liveCopy(
  source: VmChannels,
  target: VmChannels,
  socketPath: string,
  tuning: LiveCopyTuning,
  opts: CallOptions & { writerDir: string },
): Promise<LiveCopy> {
  const call = { signal: opts.signal };
  await setMigrationCapabilities(
    source.qmp,
    { ignoreShared: false, autoConverge: tuning.autoConverge },
    call,
  );
  await source.qmp.execute(
    'migrate-set-parameters',
    { 'max-bandwidth': tuning.maxBandwidthBytes, 'downtime-limit': tuning.downtimeLimitMs },
    call,
  );
  const stopped = source.qmp.waitForEvent('STOP', () => true, call);
  stopped.catch(() => undefined);
  const sourceDone = waitMigrationEnd(source.qmp, opts);
  sourceDone.catch(() => undefined);
  const targetDone = waitMigrationEnd(target.qmp, opts);
  targetDone.catch(() => undefined);
  const started = Date.now();
  await source.qmp.execute('migrate', { uri: `unix:${socketPath}` }, call);
  const relax = relaxDowntime(source.qmp, tuning);
  let end: QmpEvent;
  try {
    end = await unlessExited(
      target.process,
      'receiving the live copy',
      unlessExited(source.process, 'sending the live copy', sourceDone),
    );
  } finally {
    relax.stop();
  }
  const copyMs = Date.now() - started;
  if (end.data?.status !== 'completed') throw await copyFailure(source.qmp, target.process, opts.writerDir);
  const stopEvent = await Promise.race([stopped, Promise.resolve(undefined)]);
  const received = unlessExited(target.process, 'receiving the live copy', targetDone).then((e) =>
    expectCompleted(target.qmp, e, 'migrate-incoming', "the writer's incoming copy"),
  );
  received.catch(() => undefined);
  return { stoppedAtMs: eventTimeMs(stopEvent, started + copyMs), copyMs, received };
}

/**
 * A copy that does not converge (a busy host measures a low bandwidth, so
 * nothing ever fits in the limit) gets its downtime limit doubled every
 * `relaxEveryMs`: a longer pause, which the caller reports, rather than a
 * copy that never ends.
 */
function relaxDowntime(qmp: QmpClient, tuning: LiveCopyTuning): { stop(): void } {
  if (tuning.relaxEveryMs <= 0) return { stop: () => undefined };
  let limit = tuning.downtimeLimitMs;
  const timer = setInterval(() => {
    limit = Math.min(limit * 2, tuning.maxDowntimeLimitMs);
    void qmp.execute('migrate-set-parameters', { 'downtime-limit': limit }).catch(() => undefined);
  }, tuning.relaxEveryMs);
  return { stop: () => clearInterval(timer) };
}

/** Why the live copy failed, as precisely as can be told: a dead writer says more than the source. */
async function copyFailure(qmp: QmpClient, writer: QemuProcess, dir: string): Promise<Error> {
  type MigrateInfo = { 'error-desc'?: string };
  const info = await qmp.execute<MigrateInfo>('query-migrate').catch((): MigrateInfo => ({}));
  const died = await Promise.race([writer.exited.then(() => true), sleep(500).then(() => false)]);
  if (!died) {
    return new QmpError(
      `the live copy failed${info['error-desc'] ? `: ${info['error-desc']}` : ''}`,
      'migrate',
      undefined,
    );
  }
  const exit = await writer.exitError('receiving the live copy');
  if (exit.exit.signal === 'SIGBUS') {
    // A shared file mapping that cannot get a block raises SIGBUS: the disk is full.
    return new ResourceExhaustedError(
      `the RAM file could not be written in ${dir}: the disk is full (the writer QEMU got SIGBUS)`,
      { hint: 'free disk space (forkd rmi, forkd cleanup) and try again', cause: exit },
    );
  }
  return exit;
}

/**
 * Undo a live copy that did not finish: cancel it if it still runs, and
 * resume the source if it was left paused. Never throws.
 */
export async function abandonLiveCopy(source: QmpClient): Promise<void> {
  await source.execute('migrate_cancel').catch(() => undefined);
  await resumeIfLeftPaused(source, { timeoutMs: 10_000 }).catch(() => undefined);
}
