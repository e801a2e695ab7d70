// Saving and loading device state with QEMU migration. Guest RAM lives in a
// file-backed memory object, so with x-ignore-shared only the device state
// (tens of KB) goes through the stream; RAM is the file itself.
import { createWriteStream } from 'node:fs';
import { chmod, rename, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { QmpError, TooLargeError } from '../errors.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import { STATE_IN_FD, tailOf } from './process.js';
import type { QmpClient, QmpEvent } from './qmp.js';

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

/** Device state is tens of KB (RAM stays in its file); a stream far larger is a QEMU gone wrong. */
export const MAX_DEVICE_STATE_BYTES = 256 * 1024 * 1024;

/**
 * Write the (already stopped) VM's device state to `path`. QEMU 7.2 sends an
 * outgoing stream to a named fd only (which needs SCM_RIGHTS, which Node
 * cannot send) or through `exec:` (a shell, which its seccomp policy
 * forbids), so it connects to a unix socket this process listens on in
 * `socketDir` (inside the VM's jail) and the stream is written here, bounded,
 * to a temp file renamed into place once QEMU says completed.
 */
export async function saveDeviceState(
  qmp: QmpClient,
  path: string,
  socketDir: string,
  opts: CallOptions = {},
): Promise<void> {
  await setMigrationCapabilities(qmp, { ignoreShared: true }, opts);
  const signal = deadlineSignal(
    { timeoutMs: opts.timeoutMs ?? 60_000, signal: opts.signal },
    'saving device state',
  );
  const socketPath = join(socketDir, 'state-out.sock');
  const temp = `${path}.partial`;
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  try {
    // The VM runs as its own uid: it needs write permission on the socket to connect.
    await chmod(socketPath, 0o666);
    const received = new Promise<void>((resolve, reject) => {
      server.once('connection', (socket) => {
        server.close();
        let bytes = 0;
        const limit = new Transform({
          transform(chunk: Buffer, _enc, done) {
            bytes += chunk.length;
            if (bytes > MAX_DEVICE_STATE_BYTES)
              done(
                new TooLargeError(
                  `device state exceeds ${MAX_DEVICE_STATE_BYTES} bytes`,
                  MAX_DEVICE_STATE_BYTES,
                ),
              );
            else done(null, chunk);
          },
        });
        pipeline(socket, limit, createWriteStream(temp, { mode: 0o644 }), { signal }).then(resolve, reject);
      });
    });
    received.catch(() => undefined);
    const end = waitMigrationEnd(qmp, opts);
    end.catch(() => undefined);
    await qmp.execute('migrate', { uri: `unix:${socketPath}` }, opts);
    await expectCompleted(qmp, await end, 'migrate', 'saving device state');
    await received;
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  } finally {
    server.close();
    await rm(socketPath, { force: true });
  }
}

/**
 * Load device state into a VM started with `-incoming defer` and the state
 * file open on STATE_IN_FD (LaunchQemuOptions.stateIn); it stays paused.
 */
export async function loadDeviceState(
  qmp: QmpClient,
  opts: CallOptions & { qemuLog?: string } = {},
): Promise<void> {
  await setMigrationCapabilities(qmp, { ignoreShared: true }, opts);
  const end = waitMigrationEnd(qmp, opts);
  end.catch(() => undefined);
  await qmp.execute('migrate-incoming', { uri: `fd:${STATE_IN_FD}` }, opts);
  try {
    await expectCompleted(qmp, await end, 'migrate-incoming', 'loading device state');
  } catch (err) {
    // QEMU gives its reason (the section or field it choked on) on stderr only.
    const said = opts.qemuLog ? (await tailOf([opts.qemuLog], 3)).trim().replace(/\s*\n\s*/g, '; ') : '';
    if (!said || !(err instanceof QmpError)) throw err;
    throw new QmpError(`${err.message}: QEMU said: ${said}`, err.command, err.qmpClass, { cause: err });
  }
}
