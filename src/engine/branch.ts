// Live branch: a new snapshot taken from a *running* sandbox, which keeps
// running. The sandbox is live-migrated into a local "writer" QEMU that never
// runs guest code (-S) and whose RAM is a shared file in the new snapshot
// dir. When the migration completes QEMU has paused the source: its disk
// layer is frozen there (the sandbox goes on writing a fresh overlay), it is
// resumed, and the writer's device state is saved like any snapshot's.
//
// A branch is self-contained like a built snapshot: kernel, initrd and base
// image are hard-linked in, and the frozen layers above the base are
// flattened into one qcow2 layer over it. So branches of branches cost the
// same at any depth, and a branch can be packed, moved or outlive its source.
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotStore } from '../snapshot/store.js';
import { ConflictError, QmpError, ResourceExhaustedError } from '../errors.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { linkOrCopy } from '../util/files.js';
import { run } from '../util/run.js';
import { waitAgentAttached } from '../vmm/chardev.js';
import { createOverlay } from '../vmm/disk.js';
import {
  expectCompleted,
  saveDeviceState,
  setMigrationCapabilities,
  waitMigrationEnd,
} from '../vmm/migration.js';
import type { QmpClient, QmpEvent } from '../vmm/qmp.js';
import type { QemuInstallation } from '../vmm/qemu-binary.js';
import type { DataDir } from '../snapshot/data-dir.js';
import { machineFor } from './machine-for.js';
import { finishFrozenState } from './frozen-state.js';
import { createRunDir, randomId, type RunDir } from './run-dir.js';
import { needsHostNetwork } from './egress.js';
import { grantToVm, reclaimFromVm } from './jail.js';
import type { Sandbox } from './sandbox.js';
import { destroyVm, launchVm, unlessExited, type LaunchedVm } from './vm.js';
import { dirname, join } from 'node:path';
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createConnection, type Socket } from 'node:net';

/**
 * Migration tuning, chosen for a local writer over a unix socket:
 * - bandwidth unlimited (10 GiB/s): the copy is bound by CPU, not a link,
 *   and a throttled copy only lengthens the time the guest keeps dirtying;
 * - downtime limit 5 ms: QEMU stops the source only when what is left fits
 *   in 5 ms at the measured rate, which is the pause the user sees;
 * - auto-converge: a guest that dirties memory faster than it can be copied
 *   is slowed down step by step instead of never converging.
 */
export const BRANCH_MIGRATION = {
  maxBandwidthBytes: 10 * 2 ** 30,
  downtimeLimitMs: 5,
  autoConverge: true,
} as const;

/**
 * A copy that does not converge within a few seconds (a busy host measures a
 * low bandwidth, so nothing ever fits in 5 ms) gets a doubled downtime limit
 * every 2 s, up to 2 s: a longer pause, reported in pause_ms, rather than a
 * branch that never ends.
 */
function relaxDowntimeUntil(qmp: QmpClient, done: Promise<unknown>): { stop(): void } {
  let limit: number = BRANCH_MIGRATION.downtimeLimitMs;
  const timer = setInterval(() => {
    limit = Math.min(limit * 2, 2000);
    void qmp.execute('migrate-set-parameters', { 'downtime-limit': limit }).catch(() => undefined);
  }, 2000);
  const stop = () => clearInterval(timer);
  done.then(stop, stop);
  return { stop };
}

const BRANCH_TIMEOUT_MS = 120_000;

export interface BranchContext {
  dataDir: DataDir;
  store: SnapshotStore;
  qemu: QemuInstallation;
}

export interface BranchOptions extends CallOptions {
  tag: string;
  onProgress?: (step: string) => void;
}

export interface BranchTimings {
  /** From the moment the source stopped to the moment it ran again. */
  pauseMs: number;
  /** Live copy of RAM into the writer. */
  migrateMs: number;
  /** Flattening the disk layers and saving device state, after the source resumed. */
  finishMs: number;
  totalMs: number;
}

export interface BranchResult {
  manifest: SnapshotManifest;
  timings: BranchTimings;
}

function eventMs(e: QmpEvent | undefined, fallback: number): number {
  return e?.timestamp ? e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000 : fallback;
}

/** The node the sandbox's disk device writes to now (changes with every branch). */
async function activeDiskNode(qmp: QmpClient): Promise<{ node: string; file: string }> {
  type BlockInfo = { inserted?: { 'node-name'?: string; image?: { filename?: string } } };
  const blocks = await qmp.execute<BlockInfo[]>('query-block');
  const disk = blocks.find((b) => b.inserted?.['node-name'] && b.inserted.image?.filename);
  if (!disk?.inserted?.['node-name'] || !disk.inserted.image?.filename) {
    throw new QmpError('the sandbox has no disk node to freeze', 'query-block', undefined);
  }
  return { node: disk.inserted['node-name'], file: disk.inserted.image.filename };
}

export async function branchSandbox(
  ctx: BranchContext,
  source: Sandbox,
  opts: BranchOptions,
): Promise<BranchResult> {
  const started = Date.now();
  const vm = source.vmHandle;
  const { dir: sourceDir, manifest: base } = await ctx.store.getReady(source.info.snapshotTag);
  const signal = deadlineSignal(
    { signal: opts.signal, timeoutMs: opts.timeoutMs ?? BRANCH_TIMEOUT_MS },
    'branching',
  );
  const writer = await ctx.store.begin(opts.tag);
  let writerVm: LaunchedVm | undefined;
  let writerRun: RunDir | undefined;
  let sourceStopped = false;
  let writerAgent: Socket | undefined;
  let transferDir: string | undefined;
  try {
    opts.onProgress?.('linking kernel, initrd and base image');
    await linkOrCopy(join(sourceDir, SNAPSHOT_FILES.kernel), writer.path(SNAPSHOT_FILES.kernel));
    await linkOrCopy(join(sourceDir, SNAPSHOT_FILES.initrd), writer.path(SNAPSHOT_FILES.initrd));
    if (base.disk) {
      await linkOrCopy(join(sourceDir, base.disk.base), writer.path(SNAPSHOT_FILES.rootfs));
    }

    opts.onProgress?.('starting the writer');
    writerRun = await createRunDir(ctx.dataDir, randomId('w'));
    if (base.disk) {
      // The writer never runs guest code, but its device layout must match the source's.
      await createOverlay(
        writerRun.paths.diskOverlay,
        { path: join(sourceDir, base.disk.layer), format: 'qcow2' },
        { signal },
      );
      await grantToVm(writerRun, [writerRun.paths.diskOverlay]);
    }
    // The copy goes through a socket both jails see: a directory in the
    // source's VM dir (bound into the source's jail when it started) that the
    // writer owns and is given too.
    transferDir = join(vm.runDir.vmDir, `x-${randomId('t')}`);
    await mkdir(transferDir, { mode: 0o711 });
    await grantToVm(writerRun, [transferDir, writer.dir]);
    writerVm = await launchVm(
      machineFor({
        qemuBinary: ctx.qemu.binary,
        snapshotDir: writer.dir,
        manifest: base,
        runDir: writerRun,
        role: 'writer',
        network: { restrictEgress: !needsHostNetwork(source.info.egress), hostForwards: [] },
      }),
      writerRun,
      {
        signal,
        jail: { readOnly: [sourceDir], writable: [writer.dir, transferDir], network: 'isolated' },
      },
    );
    // A host stays attached to the writer's agent port, as it is to the
    // source's: the guest state saved from the writer must say "host
    // connected", or every child of the branch starts with a stale hang-up.
    writerAgent = await connectUnix(writerVm.machine.paths.agentSocket, signal);
    await waitAgentAttached(writerVm.qmp, { signal });
    const incomingSocket = join(transferDir, 'incoming.sock');
    await setMigrationCapabilities(writerVm.qmp, { ignoreShared: false }, { signal });
    await writerVm.qmp.execute('migrate-incoming', { uri: `unix:${incomingSocket}` }, { signal });
    // The source runs as another uid: it needs write permission on the socket to connect.
    await chmod(incomingSocket, 0o666);

    opts.onProgress?.('copying memory live');
    await setMigrationCapabilities(
      vm.qmp,
      { ignoreShared: false, autoConverge: BRANCH_MIGRATION.autoConverge },
      { signal },
    );
    await vm.qmp.execute(
      'migrate-set-parameters',
      {
        'max-bandwidth': BRANCH_MIGRATION.maxBandwidthBytes,
        'downtime-limit': BRANCH_MIGRATION.downtimeLimitMs,
      },
      { signal },
    );
    const stopped = vm.qmp.waitForEvent('STOP', () => true, { signal });
    stopped.catch(() => undefined);
    const copyDeadline = { signal, timeoutMs: opts.timeoutMs ?? BRANCH_TIMEOUT_MS };
    const sourceDone = waitMigrationEnd(vm.qmp, copyDeadline);
    sourceDone.catch(() => undefined);
    const writerDone = waitMigrationEnd(writerVm.qmp, copyDeadline);
    writerDone.catch(() => undefined);
    // Looked up before the copy: every round trip after the pause is pause.
    const active = base.disk ? await activeDiskNode(vm.qmp) : null;
    const migrateStarted = Date.now();
    await vm.qmp.execute('migrate', { uri: `unix:${incomingSocket}` }, { signal });
    const relax = relaxDowntimeUntil(vm.qmp, sourceDone);
    const end = await unlessExited(
      writerVm.process,
      'receiving the branch',
      unlessExited(vm.process, 'sending the branch', sourceDone),
    ).finally(() => relax.stop());
    const stopEvent = await Promise.race([stopped, Promise.resolve(undefined)]);
    sourceStopped = true;
    if (end.data?.status !== 'completed') throw await copyFailure(vm.qmp, writerVm, writer.dir);
    const migrateMs = Date.now() - migrateStarted;
    await leftFinishMigrate(vm.qmp, signal);

    // The source is paused: freeze the disk layer it was writing.
    let frozenLayer: string | null = null;
    let nextNode: string | null = null;
    if (active) {
      const next = join(vm.runDir.vmDir, `disk-${randomId('l')}.qcow2`);
      nextNode = randomId('n').replace('-', '');
      await vm.qmp.execute(
        'blockdev-snapshot-sync',
        { 'node-name': active.node, 'snapshot-file': next, 'snapshot-node-name': nextNode, format: 'qcow2' },
        { signal },
      );
      frozenLayer = active.file;
    }
    const resumed = vm.qmp.waitForEvent('RESUME', () => true, { signal });
    resumed.catch(() => undefined);
    await vm.qmp.execute('cont', undefined, { signal });
    sourceStopped = false;
    const resumeEvent = await resumed.catch(() => undefined);
    const stopAt = eventMs(stopEvent, migrateStarted + migrateMs);
    const pauseMs = Math.max(0, Math.round(eventMs(resumeEvent, Date.now()) - stopAt));

    opts.onProgress?.('saving device state');
    const finishStarted = Date.now();
    const writerEnd = await unlessExited(writerVm.process, 'receiving the branch', writerDone);
    await expectCompleted(writerVm.qmp, writerEnd, 'migrate-incoming', "the writer's incoming copy");
    await unlessExited(
      writerVm.process,
      'saving device state',
      saveDeviceState(writerVm.qmp, writer.path(SNAPSHOT_FILES.vmstate), writerVm.runDir.vmDir, { signal }),
    );
    await destroyVm(writerVm);
    await reclaimFromVm(writerRun, [writer.dir, writer.path(SNAPSHOT_FILES.memory)]);
    writerAgent.destroy();
    writerVm = undefined;
    writerRun = undefined;
    await rm(transferDir, { recursive: true, force: true });

    let disk: SnapshotManifest['disk'] = null;
    if (base.disk && frozenLayer) {
      opts.onProgress?.('flattening the disk layers onto the base image');
      // -B: only what differs from the base is written; the backing path is relative.
      await run(
        [
          'qemu-img',
          'convert',
          '-q',
          '-U',
          '-f',
          'qcow2',
          '-O',
          'qcow2',
          '-B',
          SNAPSHOT_FILES.rootfs,
          '-F',
          'raw',
          frozenLayer,
          writer.path(SNAPSHOT_FILES.disk),
        ],
        { signal, cwd: writer.dir },
      );
      disk = { layer: SNAPSHOT_FILES.disk, base: SNAPSHOT_FILES.rootfs };
    }
    const frozen = await finishFrozenState(writer, { signal });
    const finishMs = Date.now() - finishStarted;
    const totalMs = Date.now() - started;
    const manifest = await writer.commit({
      ...base,
      tag: opts.tag,
      status: 'writing',
      createdAt: new Date().toISOString(),
      disk,
      ...frozen,
      timings: { bootToReadyMs: 0, freezeMs: pauseMs, totalMs },
      branchedFrom: source.info.snapshotTag,
      branch: { sandboxId: source.id, depth: (base.branch?.depth ?? 0) + 1, pauseMs, migrateMs, finishMs },
    });
    if (nextNode && frozenLayer && base.disk) {
      // The branch is safe on disk; tidying the sandbox's disk chain is not worth failing it for.
      opts.onProgress?.("merging the frozen layer into the sandbox's disk");
      await mergeFrozenLayer(
        vm,
        { top: nextNode, base: join(sourceDir, base.disk.layer), frozen: frozenLayer },
        signal,
      ).catch(() => undefined);
    }
    return { manifest, timings: { pauseMs, migrateMs, finishMs, totalMs } };
  } catch (err) {
    if (sourceStopped || !(await isRunning(vm.qmp))) {
      await vm.qmp.execute('migrate_cancel').catch(() => undefined);
      await vm.qmp.execute('cont').catch(() => undefined);
    }
    writerAgent?.destroy();
    if (writerVm) await destroyVm(writerVm);
    else await writerRun?.remove().catch(() => undefined);
    if (transferDir) await rm(transferDir, { recursive: true, force: true });
    await writer.abort();
    throw err;
  }
}

function connectUnix(path: string, signal: AbortSignal): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once('connect', () => {
      socket.off('error', fail);
      socket.on('error', () => undefined);
      socket.on('data', () => undefined); // never read: the writer's guest never runs
      resolve(socket);
    });
    socket.once('error', fail);
    signal.addEventListener('abort', () => fail(new Error('aborted')), { once: true });
  });
}

/**
 * Every branch puts a frozen layer under the sandbox's disk. Left there, the
 * chain grows by one per branch and each resume reopens all of it (measured:
 * +0.37 ms of pause per layer). Once the branch has its flattened copy, the
 * frozen layer's data is streamed up into the sandbox's current overlay (a
 * background job; the guest keeps running) and the file removed, so the
 * chain is always: overlay → the snapshot's layer → base.
 */
async function mergeFrozenLayer(
  vm: Sandbox['vmHandle'],
  layers: { top: string; base: string; frozen: string },
  signal: AbortSignal,
): Promise<void> {
  const jobId = randomId('stream');
  const done = vm.qmp.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.device === jobId, {
    signal,
    timeoutMs: 120_000,
  });
  done.catch(() => undefined);
  await vm.qmp.execute(
    'block-stream',
    { 'job-id': jobId, device: layers.top, base: layers.base },
    { signal },
  );
  const end = await done;
  if (typeof end.data?.error === 'string') {
    throw new QmpError(`merging the frozen disk layer failed: ${end.data.error}`, 'block-stream', undefined);
  }
  if (dirname(layers.frozen) === vm.runDir.vmDir) await rm(layers.frozen, { force: true });
}

/** Why the live copy failed, as precisely as can be told: a dead writer says more than the source. */
async function copyFailure(qmp: QmpClient, writerVm: LaunchedVm, dir: string): Promise<Error> {
  type MigrateInfo = { 'error-desc'?: string };
  const info = await qmp.execute<MigrateInfo>('query-migrate').catch((): MigrateInfo => ({}));
  const died = await Promise.race([writerVm.process.exited.then(() => true), sleep(500).then(() => false)]);
  if (!died) {
    return new QmpError(
      `the live copy failed${info['error-desc'] ? `: ${info['error-desc']}` : ''}`,
      'migrate',
      undefined,
    );
  }
  const exit = await writerVm.process.exitError('receiving the branch');
  if (exit.exit.signal === 'SIGBUS') {
    // A shared file mapping that cannot get a block raises SIGBUS: the disk is full.
    return new ResourceExhaustedError(
      `the branch's RAM file could not be written in ${dir}: the disk is full (the writer QEMU got SIGBUS)`,
      {
        hint: 'free disk space (forkd rmi, forkd cleanup) and branch again',
        cause: exit,
      },
    );
  }
  return exit;
}

/**
 * QEMU emits MIGRATION "completed" from its migration thread a moment before
 * that thread moves the run state from finish-migrate to postmigrate; a
 * `cont` in between fails with "Migration is not finalized yet" (seen in 1
 * of 4 concurrent branches). Wait out that moment.
 */
async function leftFinishMigrate(qmp: QmpClient, signal: AbortSignal): Promise<void> {
  for (;;) {
    const { status } = await qmp.execute<{ status: string }>('query-status', undefined, { signal });
    if (status !== 'finish-migrate') return;
    await sleep(1, signal);
  }
}

async function isRunning(qmp: QmpClient): Promise<boolean> {
  const status = await qmp.execute<{ running: boolean }>('query-status').catch(() => null);
  return status?.running ?? true;
}

export function assertNotBranching(sandbox: Sandbox): void {
  if (sandbox.isBranching) {
    throw new ConflictError(`sandbox ${sandbox.id} is already being branched`, {
      hint: 'wait for that branch to finish',
    });
  }
}
