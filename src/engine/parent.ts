// Creating a snapshot: boot a parent from an image, wait until its agent (and
// warm runtime) says ready, freeze it (stop + device state, RAM stays in the
// shared memory file) and kill it: children read its RAM file, so it must
// never run again. Any failure removes the half-written snapshot.
import { TimeoutError, VmExitedError } from '../errors.js';
import type { GuestImage } from '../image/index.js';
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotStore } from '../snapshot/store.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { linkOrCopy, sha256File } from '../util/files.js';
import type { AcceleratorProbe } from '../vmm/accel.js';
import { CPU_MODEL } from '../vmm/accel.js';
import { createOverlay } from '../vmm/disk.js';
import type { MachineShape } from '../vmm/machine.js';
import { saveDeviceState } from '../vmm/migration.js';
import { pauseVm } from '../vmm/run-state.js';
import { copyFile } from 'node:fs/promises';
import { grantToVm, reclaimFromVm } from './jail.js';
import type { QemuInstallation } from '../vmm/qemu-binary.js';
import { AgentClient } from './agent/client.js';
import { machineFor } from './machine-for.js';
import { finishFrozenState } from './frozen-state.js';
import { runWarmup } from './warmup.js';
import { createRunDir, randomId, type RunDir } from './run-dir.js';
import { destroyVm, launchVm, unlessExited, type LaunchedVm } from './vm.js';
import type { DataDir } from '../snapshot/data-dir.js';
import { FORKD_VERSION } from '../version.js';

export interface CreateSnapshotOptions extends CallOptions {
  tag: string;
  image: GuestImage;
  memoryMib?: number;
  vcpus?: number;
  /** How long the guest may take to boot and warm up (default 120 s). */
  bootTimeoutMs?: number;
  replace?: boolean;
  onProgress?: (step: string) => void;
}

export interface SnapshotContext {
  dataDir: DataDir;
  store: SnapshotStore;
  qemu: QemuInstallation;
  accel: AcceleratorProbe;
}

export async function createSnapshot(
  ctx: SnapshotContext,
  opts: CreateSnapshotOptions,
): Promise<SnapshotManifest> {
  const started = Date.now();
  const { image } = opts;
  const writer = await ctx.store.begin(opts.tag, { replace: opts.replace });
  let vm: LaunchedVm | undefined;
  let runDir: RunDir | undefined;
  try {
    const shape: MachineShape = {
      machineType: 'microvm',
      accel: ctx.accel.accel,
      cpuModel: CPU_MODEL[ctx.accel.accel],
      vcpus: opts.vcpus ?? image.vcpus ?? 1,
      memoryMib: opts.memoryMib ?? image.memoryMib,
      hasDisk: image.rootfsPath !== null,
      hasNetwork: true,
    };
    opts.onProgress?.('linking kernel, initrd and disk into the snapshot');
    await linkOrCopy(image.kernelPath, writer.path(SNAPSHOT_FILES.kernel));
    await linkOrCopy(image.initrdPath, writer.path(SNAPSHOT_FILES.initrd));
    let disk: SnapshotManifest['disk'] = null;
    if (image.rootfsPath) {
      await linkOrCopy(image.rootfsPath, writer.path(SNAPSHOT_FILES.rootfs));
      // Relative backing path: the snapshot dir can move (packs, data-dir changes).
      await createOverlay(
        writer.path(SNAPSHOT_FILES.disk),
        { path: SNAPSHOT_FILES.rootfs, format: 'raw' },
        opts,
      );
      disk = { layer: SNAPSHOT_FILES.disk, base: SNAPSHOT_FILES.rootfs };
    }
    const draft = {
      machine: shape,
      kernel: { version: image.kernelVersion, sha256: '', cmdline: image.kernelCmdline },
      disk,
    };
    runDir = await createRunDir(ctx.dataDir, randomId('p'));
    // The parent writes its RAM file and disk layer into the snapshot being
    // written; both go back to root once it is frozen.
    const owned = [writer.dir, ...(disk ? [writer.path(SNAPSHOT_FILES.disk)] : [])];
    await grantToVm(runDir, owned);
    opts.onProgress?.(`booting parent (${shape.accel}, ${shape.memoryMib} MiB)`);
    const bootStarted = Date.now();
    vm = await launchVm(
      machineFor({
        qemuBinary: ctx.qemu.binary,
        snapshotDir: writer.dir,
        manifest: draft,
        runDir,
        role: 'parent',
        // A parent runs its recipe's warm-up with no network, like a child with the default policy.
        network: { restrictEgress: true, hostForwards: [] },
        diskOverlay: writer.path(SNAPSHOT_FILES.disk),
      }),
      runDir,
      {
        signal: opts.signal,
        timeoutMs: opts.timeoutMs,
        jail: { readOnly: [], writable: [writer.dir], network: 'isolated' },
      },
    ).catch((err: unknown) => {
      if (err instanceof VmExitedError && shape.accel === 'kvm') {
        throw new VmExitedError(err.message, err.exit, err.logTail, {
          hint: `${ctx.accel.reason}; KVM may not be usable here: run \`forkd doctor\`, or use --accel tcg`,
        });
      }
      throw err;
    });
    const bootTimeoutMs = opts.bootTimeoutMs ?? 120_000;
    // The agent stays connected through the freeze: the guest then never sees
    // the host leave, and a child's first connection (made before it runs)
    // matches the state it was frozen in. See docs/agent-protocol.md.
    // A runtime may take minutes to warm (Chromium under TCG): it gets the
    // recipe's warm-up allowance on top of the boot's.
    const runtimeMs = image.runtime ? (image.warmup?.timeoutMs ?? RUNTIME_START_TIMEOUT_MS) : 0;
    const agent = await waitUntilReady(
      vm,
      image.runtime !== null,
      { signal: opts.signal, timeoutMs: bootTimeoutMs + runtimeMs },
      opts.onProgress,
    );
    if (image.warmup) {
      const warming = unlessExited(vm.process, 'warming up', runWarmup(agent, image.warmup, opts));
      await warming.catch(async (err: unknown) => {
        await agent.close();
        throw err;
      });
    }
    const bootToReadyMs = Date.now() - bootStarted;

    opts.onProgress?.('freezing parent');
    const freezeStarted = Date.now();
    await pauseVm(vm.qmp, { signal: opts.signal });
    await unlessExited(
      vm.process,
      'saving device state',
      saveDeviceState(vm.qmp, writer.path(SNAPSHOT_FILES.vmstate), runDir.vmDir, opts),
    );
    // The parent's console is the only record of its boot: keep it with the snapshot.
    await copyFile(runDir.paths.consoleLog, writer.path(SNAPSHOT_FILES.bootLog));
    await destroyVm(vm);
    await reclaimFromVm(runDir, [...owned, writer.path(SNAPSHOT_FILES.memory)]);
    await agent.close();
    vm = undefined;
    const freezeMs = Date.now() - freezeStarted;
    opts.onProgress?.('sparsifying the RAM file');
    const frozen = await finishFrozenState(writer, opts);
    const manifest: SnapshotManifest = {
      formatVersion: 1,
      tag: opts.tag,
      status: 'writing',
      createdAt: new Date().toISOString(),
      forkdVersion: FORKD_VERSION,
      qemu: { version: ctx.qemu.version, versionLine: ctx.qemu.versionLine },
      machine: shape,
      accelReason: ctx.accel.reason,
      kernel: { ...draft.kernel, sha256: await sha256File(writer.path(SNAPSHOT_FILES.kernel)) },
      initrd: { sha256: await sha256File(writer.path(SNAPSHOT_FILES.initrd)) },
      image: { recipe: image.recipe, contentHash: image.contentHash },
      disk,
      ...frozen,
      runtime: image.runtime ? { kind: image.runtime.kind, imports: [...image.runtime.imports] } : null,
      timings: { bootToReadyMs, freezeMs, totalMs: Date.now() - started },
    };
    return await writer.commit(manifest);
  } catch (err) {
    if (vm) await destroyVm(vm);
    await runDir?.remove();
    await writer.abort();
    throw err;
  }
}

/** How long a warm runtime may take to say ready, unless the recipe gives a warm-up timeout. */
const RUNTIME_START_TIMEOUT_MS = 600_000;

/** Poll the agent until it answers, and its warm runtime (if any) is ready. */
async function waitUntilReady(
  vm: LaunchedVm,
  needsRuntime: boolean,
  opts: CallOptions,
  onProgress?: (step: string) => void,
): Promise<AgentClient> {
  // Ends the poll below when the VM exits: it would otherwise spin until the deadline.
  const vmGone = new AbortController();
  const signal = AbortSignal.any([
    deadlineSignal(opts, 'waiting for the parent to become ready'),
    vmGone.signal,
  ]);
  const work = (async () => {
    const agent = await AgentClient.connect(vm.machine.paths.agentSocket, { signal });
    try {
      let announced = false;
      for (;;) {
        const ping = await agent.ping({ signal, timeoutMs: 30_000 }).catch((err: unknown) => {
          if (signal.aborted) throw err;
          return null;
        });
        if (ping && (!needsRuntime || ping.runtime?.ready)) return agent;
        if (ping?.runtime?.error)
          throw new VmExitedError(
            `the guest's warm runtime failed: ${ping.runtime.error}`,
            { code: null, signal: null },
            '',
          );
        if (ping && !announced) {
          announced = true;
          onProgress?.('agent up, waiting for the warm runtime');
        }
        await sleep(20, signal);
      }
    } catch (err) {
      await agent.close();
      throw err;
    }
  })();
  try {
    return await unlessExited(vm.process, 'booting the parent', work);
  } catch (err) {
    vmGone.abort();
    if (err instanceof TimeoutError) {
      const tail = await vm.process.logTail(5);
      err.message = `the guest never became ready within ${err.timeoutMs} ms${tail ? `; console ends: ${tail.split('\n').pop()}` : ''}`;
    }
    throw err;
  }
}
