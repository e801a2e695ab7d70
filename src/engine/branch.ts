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
import type { DataDir } from '../snapshot/data-dir.js';
import { ConflictError, NotFoundError } from '../errors.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import { linkOrCopy } from '../util/files.js';
import { holdAgentPort } from '../vmm/chardev.js';
import { createOverlay } from '../vmm/disk.js';
import {
  activeDiskNode,
  flattenDiskLayers,
  freezeDiskLayer,
  streamIntoLayer,
  type DiskNode,
} from '../vmm/disk-layers.js';
import { abandonLiveCopy, acceptLiveCopy, liveCopy, type LiveCopyTuning } from '../vmm/live-copy.js';
import { saveDeviceState } from '../vmm/migration.js';
import type { QemuInstallation } from '../vmm/qemu-binary.js';
import { pauseVm, resumeVm } from '../vmm/run-state.js';
import type { QmpClient } from '../vmm/qmp.js';
import { machineFor } from './machine-for.js';
import { finishFrozenState } from './frozen-state.js';
import { diffParentOf, writeDiffFiles } from './diff-link.js';
import { diffContentHash } from '../snapshot/content-hash.js';
import { createRunDir, randomId, type RunDir } from './run-dir.js';
import { needsHostNetwork } from './egress.js';
import { grantToVm, reclaimFromVm } from './jail.js';
import type { Sandbox } from './sandbox.js';
import { destroyVm, launchVm, unlessExited, type LaunchedVm } from './vm.js';
import { dirname, join } from 'node:path';
import { mkdir, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';

/**
 * Migration tuning, chosen for a local writer over a unix socket:
 * - bandwidth unlimited (10 GiB/s): the copy is bound by CPU, not a link,
 *   and a throttled copy only lengthens the time the guest keeps dirtying;
 * - downtime limit 5 ms: QEMU stops the source only when what is left fits
 *   in 5 ms at the measured rate, which is the pause the user sees;
 * - auto-converge: a guest that dirties memory faster than it can be copied
 *   is slowed down step by step instead of never converging;
 * - a copy that has not converged gets a doubled downtime limit every 2 s,
 *   up to 2 s: a longer pause, reported in pause_ms, rather than a branch
 *   that never ends (a busy host measures a low bandwidth).
 */
export const BRANCH_MIGRATION: LiveCopyTuning = {
  maxBandwidthBytes: 10 * 2 ** 30,
  downtimeLimitMs: 5,
  autoConverge: true,
  relaxEveryMs: 2000,
  maxDowntimeLimitMs: 2000,
};

const BRANCH_TIMEOUT_MS = 120_000;

export interface BranchContext {
  dataDir: DataDir;
  store: SnapshotStore;
  qemu: QemuInstallation;
}

export interface BranchOptions extends CallOptions {
  tag: string;
  /** Also keep what changed since the sandbox's snapshot, as a diff link of it (chain.ts). */
  diff?: boolean;
  /**
   * With `diff`: the snapshot to diff against instead of the sandbox's own
   * (a workspace's previous state, or its source): same kernel, image and
   * machine, or the branch is refused before anything is copied.
   */
  diffParent?: string | undefined;
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

/** The snapshot the source was restored from: a branch keeps its disk layers and machine. */
async function sourceSnapshot(store: SnapshotStore, source: Sandbox): ReturnType<SnapshotStore['getReady']> {
  try {
    return await store.getReady(source.info.snapshotTag);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    throw new ConflictError(
      `sandbox ${source.id} cannot be branched: its snapshot ${source.info.snapshotTag} was removed`,
      { hint: 'a child of a fork is branchable when the fork kept its snapshot (keep_snapshot: true)' },
    );
  }
}

export async function branchSandbox(
  ctx: BranchContext,
  source: Sandbox,
  opts: BranchOptions,
): Promise<BranchResult> {
  const started = Date.now();
  const vm = source.vmHandle;
  const { dir: sourceDir, manifest: base } = await sourceSnapshot(ctx.store, source);
  const diffFrom = opts.diff
    ? await diffParentOf(ctx.store, source.info.snapshotTag, sourceDir, base, opts.diffParent)
    : null;
  const signal = deadlineSignal(
    { signal: opts.signal, timeoutMs: opts.timeoutMs ?? BRANCH_TIMEOUT_MS },
    'branching',
  );
  const writer = await ctx.store.begin(opts.tag);
  let writerVm: LaunchedVm | undefined;
  let writerRun: RunDir | undefined;
  let writerAgent: Socket | undefined;
  let transferDir: string | undefined;
  let copying = false;
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
    writerAgent = await holdAgentPort(writerVm.qmp, writerVm.machine.paths.agentSocket, { signal });
    const socketPath = join(transferDir, 'incoming.sock');
    await acceptLiveCopy(writerVm.qmp, socketPath, { signal });
    // Looked up before the copy: every round trip after the pause is pause.
    const active = base.disk ? await activeDiskNode(vm.qmp, { signal }) : null;

    copying = true;
    // Under TCG a branch sometimes captured RAM that disagreed with the CPU
    // state (children panicked in timer code, or hung): a guest write racing
    // TCG's dirty tracking while the copy runs. A paused source has no
    // running vCPU to race, so under TCG the copy is stop-and-copy: a longer
    // pause (pause_ms says how long), a consistent branch. KVM's dirty log
    // has no such race; there the copy stays live.
    const pausedAtMs = base.machine.accel === 'tcg' ? await pauseForCopy(vm.qmp, signal) : null;
    opts.onProgress?.(pausedAtMs === null ? 'copying memory live' : 'copying memory (paused: TCG)');
    const copy = await liveCopy(vm, writerVm, socketPath, BRANCH_MIGRATION, {
      signal,
      timeoutMs: opts.timeoutMs ?? BRANCH_TIMEOUT_MS,
      writerDir: writer.dir,
    });
    // The source is paused: freeze the disk layer it was writing.
    const frozen = active ? await freezeActiveLayer(vm, active, signal) : null;
    const { resumedAtMs } = await resumeVm(vm.qmp, { signal });
    copying = false;
    const pauseMs = Math.max(0, Math.round(resumedAtMs - (pausedAtMs ?? copy.stoppedAtMs)));

    opts.onProgress?.('saving device state');
    const finishStarted = Date.now();
    await copy.received;
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
    if (base.disk && frozen) {
      opts.onProgress?.('flattening the disk layers onto the base image');
      await flattenDiskLayers(
        frozen.layer.file,
        writer.path(SNAPSHOT_FILES.disk),
        // The writer's rootfs is a hard link of the source's, which the sandbox's chain names.
        { name: SNAPSHOT_FILES.rootfs, cwd: writer.dir, inChainAs: join(sourceDir, base.disk.base) },
        { signal },
      );
      disk = { layer: SNAPSHOT_FILES.disk, base: SNAPSHOT_FILES.rootfs };
    }
    const frozenState = await finishFrozenState(writer, { signal });
    let link: Partial<SnapshotManifest> = {};
    if (opts.diff) {
      opts.onProgress?.('writing the diff against the parent snapshot');
      link = await writeDiffFiles(
        ctx.store,
        writer,
        { ...diffFrom!, frozenDisk: frozen?.layer.file ?? null },
        { signal },
      );
      link.contentHash = await diffContentHash(writer.dir, { ...frozenState, ...link });
    }
    const finishMs = Date.now() - finishStarted;
    const totalMs = Date.now() - started;
    const manifest = await writer.commit({
      ...base,
      // What was the source snapshot's own identity and chain is not this one's.
      contentHash: undefined,
      parent: undefined,
      diff: undefined,
      ...link,
      tag: opts.tag,
      status: 'writing',
      createdAt: new Date().toISOString(),
      disk,
      ...frozenState,
      timings: { bootToReadyMs: 0, freezeMs: pauseMs, totalMs },
      branchedFrom: source.info.snapshotTag,
      branch: {
        sandboxId: source.id,
        depth: (base.branch?.depth ?? 0) + 1,
        pauseMs,
        migrateMs: copy.copyMs,
        finishMs,
      },
    });
    if (frozen && base.disk) {
      // The branch is safe on disk; tidying the sandbox's disk chain is not worth failing it for.
      opts.onProgress?.("merging the frozen layer into the sandbox's disk");
      await mergeFrozenLayer(vm, frozen, join(sourceDir, base.disk.layer), signal).catch(() => undefined);
    }
    return { manifest, timings: { pauseMs, migrateMs: copy.copyMs, finishMs, totalMs } };
  } catch (err) {
    if (copying) await abandonLiveCopy(vm.qmp);
    writerAgent?.destroy();
    if (writerVm) await destroyVm(writerVm);
    else await writerRun?.remove().catch(() => undefined);
    if (transferDir) await rm(transferDir, { recursive: true, force: true });
    await writer.abort();
    throw err;
  }
}

/** Pause the source before the copy; resolves with when it stopped (ms since the epoch). */
async function pauseForCopy(qmp: QmpClient, signal: AbortSignal): Promise<number> {
  const before = Date.now();
  await pauseVm(qmp, { signal });
  return before;
}

/** The layer a paused sandbox was writing, frozen under a new overlay in its VM dir. */
async function freezeActiveLayer(
  vm: Sandbox['vmHandle'],
  active: DiskNode,
  signal: AbortSignal,
): Promise<{ layer: DiskNode; overlay: DiskNode }> {
  const overlay = {
    file: join(vm.runDir.vmDir, `disk-${randomId('l')}.qcow2`),
    node: randomId('n').replace('-', ''),
  };
  await freezeDiskLayer(vm.qmp, active, overlay, { signal });
  return { layer: active, overlay };
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
  frozen: { layer: DiskNode; overlay: DiskNode },
  base: string,
  signal: AbortSignal,
): Promise<void> {
  await streamIntoLayer(vm.qmp, { top: frozen.overlay.node, base, jobId: randomId('stream') }, { signal });
  if (dirname(frozen.layer.file) === vm.runDir.vmDir) await rm(frozen.layer.file, { force: true });
}

export function assertNotBranching(sandbox: Sandbox): void {
  if (sandbox.isBranching) {
    throw new ConflictError(`sandbox ${sandbox.id} is already being branched`, {
      hint: 'wait for that branch to finish',
    });
  }
}
