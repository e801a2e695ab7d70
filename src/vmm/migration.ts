// Saving and loading device state with QEMU migration. Guest RAM lives in a
// file-backed memory object, so with x-ignore-shared only the device state
// (tens of KB) goes through the stream; RAM is the file itself.
import { QmpError } from '../errors.js';
import { pathExists } from '../util/files.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import type { QmpClient, QmpEvent } from './qmp.js';

/** QEMU runs exec: URIs through /bin/sh -c. */
function shellQuote(path: string): string {
  return `'${path.replaceAll("'", `'\\''`)}'`;
}

export interface MigrationCapabilities {
  ignoreShared: boolean;
  /** Throttle a guest that dirties memory faster than a live copy can follow. */
  autoConverge?: boolean;
}

export async function setMigrationCapabilities(
  qmp: QmpClient,
  caps: MigrationCapabilities,
  opts: CallOptions = {},
): Promise<void> {
  await qmp.execute(
    'migrate-set-capabilities',
    {
      capabilities: [
        { capability: 'x-ignore-shared', state: caps.ignoreShared },
        { capability: 'events', state: true },
        { capability: 'auto-converge', state: caps.autoConverge ?? false },
      ],
    },
    opts,
  );
}

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/** The MIGRATION event that ends a migration (completed, failed or cancelled). */
export function waitMigrationEnd(qmp: QmpClient, opts: CallOptions): Promise<QmpEvent> {
  return qmp.waitForEvent('MIGRATION', (e) => TERMINAL.has(String(e.data?.status)), {
    timeoutMs: opts.timeoutMs ?? 60_000,
    signal: opts.signal,
  });
}

/** Throws a QmpError (with QEMU's error description) unless `end` says completed. */
export async function expectCompleted(
  qmp: QmpClient,
  end: QmpEvent,
  command: string,
  what: string,
): Promise<void> {
  const status = String(end.data?.status);
  if (status === 'completed') return;
  type MigrateInfo = { 'error-desc'?: string };
  const info = await qmp.execute<MigrateInfo>('query-migrate').catch((): MigrateInfo => ({}));
  throw new QmpError(
    `${what} ${status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`,
    command,
    undefined,
  );
}

/**
 * Write the (already stopped) VM's device state to `path`. QEMU reports
 * completion when it has written the stream into the pipe, before `cat` has
 * written it out; so `cat` writes a temp file and renames it, and the file's
 * appearance under its final name is the real completion.
 */
export async function saveDeviceState(qmp: QmpClient, path: string, opts: CallOptions = {}): Promise<void> {
  await setMigrationCapabilities(qmp, { ignoreShared: true }, opts);
  const end = waitMigrationEnd(qmp, opts);
  end.catch(() => undefined);
  const temp = `${path}.partial`;
  await qmp.execute(
    'migrate',
    { uri: `exec:cat > ${shellQuote(temp)} && mv ${shellQuote(temp)} ${shellQuote(path)}` },
    opts,
  );
  await expectCompleted(qmp, await end, 'migrate', 'saving device state');
  const signal = deadlineSignal(
    { timeoutMs: opts.timeoutMs ?? 30_000, signal: opts.signal },
    'writing device state',
  );
  while (!(await pathExists(path))) await sleep(1, signal);
}

/** Load device state into a VM started with `-incoming defer`; it stays paused. */
export async function loadDeviceState(qmp: QmpClient, path: string, opts: CallOptions = {}): Promise<void> {
  await setMigrationCapabilities(qmp, { ignoreShared: true }, opts);
  const end = waitMigrationEnd(qmp, opts);
  end.catch(() => undefined);
  await qmp.execute('migrate-incoming', { uri: `exec:cat ${shellQuote(path)}` }, opts);
  await expectCompleted(qmp, await end, 'migrate-incoming', 'loading device state');
}
