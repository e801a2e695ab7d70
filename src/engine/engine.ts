// The engine facade: one object per data dir that the CLI (local mode) and
// the daemon both drive. It owns host facts (QEMU, accelerator) and hands
// out snapshots and sandboxes; it knows nothing about HTTP or terminals.
import { availableParallelism } from 'node:os';
import { buildImage, type GuestImage, type ProgressFn, type Recipe } from '../image/index.js';
import { builtinRecipes, checkKernelFile, checkRootfsFile, prepareForeignImage } from '../image/index.js';
import { DataDir, defaultDataDir } from '../snapshot/data-dir.js';
import type { SnapshotManifest } from '../snapshot/manifest.js';
import { SnapshotStore } from '../snapshot/store.js';
import { assertValidTag } from '../snapshot/tag.js';
import { ConflictError, InvalidArgumentError, NotFoundError } from '../errors.js';
import { readdir } from 'node:fs/promises';
import { QmpClient } from '../vmm/qmp.js';
import { resumeIfLeftPaused } from '../vmm/run-state.js';
import { QemuProcess } from '../vmm/process.js';
import { AgentClient } from './agent/client.js';
import { findSandboxCgroup } from './cgroups.js';
import { DEFAULT_EGRESS, formatEgress, needsHostNetwork, parseCidr, type EgressPolicy } from './egress.js';
import { checkEgressSupported } from './fork.js';
import { probeJail } from './jail.js';
import { EgressFirewall } from './egress-firewall.js';
import { existingRunDir, isVmAlive, readVmRecord } from './run-dir.js';
import { Sandbox, type SandboxInfo } from './sandbox.js';

/** Sandbox ids as randomId('sb') makes them (checked before a path is built). */
const SANDBOX_ID = /^sb-[a-z0-9]{12}$/;
/** A running sandbox answers its sockets at once; this only bounds a wedged one. */
const ATTACH_TIMEOUT_MS = 10_000;
import {
  probeAccelerator,
  resolveAccelerator,
  type AcceleratorChoice,
  type AcceleratorProbe,
} from '../vmm/accel.js';
import { findQemu, type QemuInstallation } from '../vmm/qemu-binary.js';
import { cleanupDataDir, type CleanupReport } from './cleanup.js';
import { assertNoOtherDaemon } from './daemon-lock.js';
import { assertNoDependents, descendantsOf } from '../snapshot/chain.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import {
  checkChildCount,
  restoreChildren,
  type ForkContext,
  type RestoreOptions,
  type RestoreResult,
} from './fork.js';
import { WarmPool, type PoolOptions } from './pool.js';
import { createSnapshot, type CreateSnapshotOptions } from './parent.js';
import { join } from 'node:path';
import { SNAPSHOT_FILES } from '../snapshot/manifest.js';
import type { HostFacts } from '../snapshot/compat.js';
import { dirPhysicalBytes, pathExists } from '../util/files.js';
import { buildSnapshotTree, type TreeSnapshot } from '../snapshot/tree.js';
import { packSnapshot, type PackOptions, type PackResult } from '../hub/pack.js';
import { chainSnapshots, diffPackChain } from '../hub/pack-chain.js';
import { unpackPack, type UnpackOptions, type UnpackResult } from '../hub/unpack.js';
import { pullPack, type PullOptions, type PullResult } from '../hub/pull.js';
import { assertNotBranching, branchSandbox, type BranchOptions, type BranchResult } from './branch.js';

export interface EngineOptions {
  dataDir?: string;
  qemuBinary?: string;
  accel?: AcceleratorChoice;
  /** Ranges guests may reach despite the private-range block (`forkd serve --egress-allow-cidr`). */
  egressAllowCidrs?: readonly string[];
}

export interface SnapshotRequest extends Omit<CreateSnapshotOptions, 'image'> {
  /** A built-in recipe's name, or a recipe read from a file (loadRecipeFile). */
  recipe: string | Recipe;
  onImageProgress?: ProgressFn;
}

/** A snapshot of a caller's own kernel and ext4 root file system (the original forkd's {kernel, rootfs}). */
export interface FilesSnapshotRequest extends Omit<CreateSnapshotOptions, 'image'> {
  kernelPath: string;
  rootfsPath: string;
  onImageProgress?: ProgressFn;
}

export class Engine {
  readonly dataDir: DataDir;
  readonly store: SnapshotStore;
  private readonly accelChoice: AcceleratorChoice;
  private readonly qemuBinary: string | undefined;
  private readonly pools = new Map<string, WarmPool>();
  readonly firewall: EgressFirewall;

  constructor(opts: EngineOptions = {}) {
    this.dataDir = new DataDir(opts.dataDir ?? defaultDataDir());
    const operatorAllow = (opts.egressAllowCidrs ?? []).map((cidr) => {
      const parsed = parseCidr(cidr);
      if (!parsed) {
        throw new InvalidArgumentError(`invalid CIDR ${JSON.stringify(cidr)}`, 'egress-allow-cidr', {
          hint: 'use a range such as 192.168.10.0/24',
        });
      }
      return parsed;
    });
    this.firewall = new EgressFirewall({ operatorAllow });
    this.store = new SnapshotStore(this.dataDir);
    this.accelChoice = opts.accel ?? 'auto';
    this.qemuBinary = opts.qemuBinary;
    if (!['auto', 'kvm', 'tcg'].includes(this.accelChoice)) {
      throw new InvalidArgumentError(`unknown accelerator ${JSON.stringify(this.accelChoice)}`, 'accel', {
        hint: 'use kvm, tcg or auto',
      });
    }
  }

  qemu(): Promise<QemuInstallation> {
    return findQemu(this.qemuBinary);
  }

  /** The accelerator to boot with; probes KVM once per QEMU + kernel (cached in the data dir). */
  async accelerator(kernelPath: string): Promise<AcceleratorProbe> {
    return resolveAccelerator(this.accelChoice, {
      qemu: await this.qemu(),
      kernelPath,
      jail: probeJail(kernelPath),
      cacheFile: this.dataDir.accelCacheFile,
    });
  }

  buildImage(
    recipe: string | Recipe,
    opts: { force?: boolean; onProgress?: ProgressFn; signal?: AbortSignal } = {},
  ): Promise<GuestImage> {
    return buildImage(recipe, { dataDir: this.dataDir.root, ...opts });
  }

  /**
   * The current image of a recipe. Always goes through the build: a cached
   * build costs only hashing its inputs (milliseconds), and an image built
   * from an older agent or init must not be booted by mistake.
   */
  isBuiltinRecipe(name: string): boolean {
    return builtinRecipes().some((r) => r.name === name);
  }

  imageFor(recipe: string | Recipe, onProgress?: ProgressFn, signal?: AbortSignal): Promise<GuestImage> {
    return this.buildImage(recipe, { onProgress, signal });
  }

  async createSnapshot(req: SnapshotRequest): Promise<SnapshotManifest> {
    assertValidTag(req.tag);
    if (!req.replace) await this.store.assertTagFree(req.tag); // before any image work
    const image = await this.imageFor(req.recipe, req.onImageProgress, req.signal);
    const qemu = await this.qemu();
    const accel = await this.accelerator(image.kernelPath);
    return createSnapshot({ dataDir: this.dataDir, store: this.store, qemu, accel }, { ...req, image });
  }

  /**
   * Boot the caller's kernel on their ext4 image (only read: forkd's files
   * come in the initramfs, see image/foreign.ts), warm python3, freeze.
   */
  async createSnapshotFromFiles(req: FilesSnapshotRequest): Promise<SnapshotManifest> {
    assertValidTag(req.tag);
    const kernel = await checkKernelFile(req.kernelPath);
    const rootfs = await checkRootfsFile(req.rootfsPath);
    if (!req.replace) await this.store.assertTagFree(req.tag); // before copying the rootfs
    const foreign = await prepareForeignImage(kernel, rootfs, {
      dataDir: this.dataDir.root,
      onProgress: req.onImageProgress,
      signal: req.signal,
    });
    try {
      const qemu = await this.qemu();
      const accel = await this.accelerator(foreign.image.kernelPath);
      const ctx = { dataDir: this.dataDir, store: this.store, qemu, accel };
      return await createSnapshot(ctx, { ...req, image: foreign.image });
    } catch (err) {
      throw foreign.explainBootFailure(err);
    } finally {
      await foreign.dispose();
    }
  }

  private async forkContext(tag: string): Promise<ForkContext> {
    assertValidTag(tag);
    const { dir, manifest } = await this.store.getReady(tag);
    const qemu = await this.qemu();
    // Only a KVM snapshot needs to know whether KVM works here.
    const kvmUsable =
      manifest.machine.accel === 'kvm'
        ? (
            await probeAccelerator({
              qemu,
              kernelPath: join(dir, SNAPSHOT_FILES.kernel),
              jail: probeJail(join(dir, SNAPSHOT_FILES.kernel)),
              cacheFile: this.dataDir.accelCacheFile,
            })
          ).kvmUsable
        : false;
    return {
      dataDir: this.dataDir,
      store: this.store,
      qemu,
      kvmUsable,
      cores: availableParallelism(),
      firewall: this.firewall,
    };
  }

  /**
   * Restore N children. With `prewarm`, children come first from this
   * engine's warm pool for the tag (see prewarm()), the rest are restored.
   */
  async fork(opts: RestoreOptions): Promise<RestoreResult> {
    const n = checkChildCount(opts.n);
    const ctx = await this.forkContext(opts.tag);
    // Pooled children were restored with the pool's egress policy, and a policy cannot move a VM between networks.
    const candidate = opts.prewarm ? this.pools.get(opts.tag) : undefined;
    const pool =
      candidate && formatEgress(candidate.egress) === formatEgress(opts.egress ?? DEFAULT_EGRESS)
        ? candidate
        : undefined;
    if (!pool || pool.available === 0) return restoreChildren(ctx, opts);
    const started = Date.now();
    const pooled = await pool.take(n, { signal: opts.signal, timeoutMs: opts.timeoutMs, vary: opts.vary });
    pooled.forEach((c) => opts.onChild?.(c));
    const rest = n - pooled.length;
    const restored =
      rest > 0
        ? (await restoreChildren(ctx, { ...opts, n: rest }, { firstIndex: pooled.length })).children
        : [];
    return { children: [...pooled, ...restored], wallMs: Date.now() - started };
  }

  /**
   * Keep `size` children of a snapshot restored and idle, so that
   * fork({ prewarm: true }) hands them out without restoring on the spot.
   * Resolves once the pool is full.
   */
  async prewarm(tag: string, size: number, opts: PoolOptions['restore'] = {}): Promise<WarmPool> {
    checkChildCount(size);
    const ctx = await this.forkContext(tag);
    await this.pools.get(tag)?.close();
    const pool = new WarmPool(ctx, { tag, size, restore: opts });
    this.pools.set(tag, pool);
    await pool.fill();
    return pool;
  }

  /** Change a running sandbox's egress policy (PUT /v1/sandboxes/:id/egress). */
  async setEgress(sandbox: Sandbox, policy: EgressPolicy): Promise<void> {
    checkEgressSupported(policy);
    await sandbox.setEgress(policy);
  }

  /** Stop every warm pool (their children are killed). */
  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
    this.pools.clear();
    await this.firewall.proxy.close();
  }

  /** Sandboxes whose QEMU is running, from their run dirs (started by any forkd process). */
  /** Every snapshot under the one it was branched from, with the sandboxes running from each. */
  async snapshotTree(): Promise<TreeSnapshot[]> {
    const records = await this.store.list();
    const inputs = await Promise.all(
      records.map(async (r) => ({ tag: r.tag, manifest: r.manifest, bytes: await dirPhysicalBytes(r.dir) })),
    );
    return buildSnapshotTree(inputs, await this.sandboxes());
  }

  async sandboxes(): Promise<SandboxInfo[]> {
    const out: SandboxInfo[] = [];
    for (const name of await readdir(this.dataDir.runDir).catch(() => [] as string[])) {
      const dir = this.dataDir.vmRunDir(name);
      const record = await readVmRecord(dir);
      if (record?.sandbox && isVmAlive(dir, record.pid)) out.push(record.sandbox);
    }
    return out.sort((a, b) => a.createdAtUnix - b.createdAtUnix || a.id.localeCompare(b.id));
  }

  /**
   * The rule every front end applies before removing a snapshot: no running
   * sandbox (started by any forkd process) may still use it. Throws a
   * ConflictError naming them.
   */
  async assertSnapshotUnused(tag: string): Promise<void> {
    const users = (await this.sandboxes()).filter((s) => s.snapshotTag === tag).map((s) => s.id);
    if (users.length === 0) return;
    throw new ConflictError(`snapshot ${tag} has running sandboxes: ${users.join(', ')}`, {
      hint: 'kill them first (forkd kill), or delete through the API with force=true, which kills them',
    });
  }

  /**
   * Remove a snapshot: a missing tag is NotFoundError; one that running
   * sandboxes use (unless `force`: the caller has stopped its own), one
   * being written, or one that diff links depend on (unless `cascade`,
   * which removes them first) is ConflictError. The CLI and the daemon both
   * come here, so both refuse with the same words. Returns what was removed.
   */
  async removeSnapshot(
    tag: string,
    opts: {
      force?: boolean;
      cascade?: boolean;
      /** Called with every tag about to go, once the removal is allowed (a daemon stops their sandboxes). */
      beforeRemove?: (doomed: readonly string[]) => Promise<void>;
    } = {},
  ): Promise<string[]> {
    await this.store.get(tag);
    const doomed = opts.cascade ? [...(await descendantsOf(this.store, tag)), tag] : [tag];
    if (!opts.cascade) await assertNoDependents(this.store, tag);
    if (!opts.force) for (const t of doomed) await this.assertSnapshotUnused(t);
    await opts.beforeRemove?.(doomed);
    // Leaves first, each refused if a link over it appeared meanwhile: a chain is never left broken.
    for (const t of doomed) await this.store.remove(t, { unlessDependents: true });
    return doomed;
  }

  /** A self-contained copy of `from` (a diff link or not) under `to`: no parent, no diff files. */
  async compactSnapshot(from: string, to: string): Promise<SnapshotManifest> {
    return this.store.clone(from, to, {
      branchedFrom: `compact:${from}`,
      // A copy is not itself a live branch: the API then names it compact:<from>, as the original.
      branch: undefined,
      parent: undefined,
      diff: undefined,
      contentHash: undefined,
    });
  }

  /**
   * Take charge of a running sandbox started by another forkd process (a
   * held fork, a daemon before its restart): reconnect its QMP and agent
   * channels. Its QEMU is not killed when this process exits.
   */
  async attach(id: string, opts: CallOptions = {}): Promise<Sandbox> {
    if (!SANDBOX_ID.test(id)) {
      throw new InvalidArgumentError(`invalid sandbox id ${JSON.stringify(id)}`, 'id', {
        hint: 'ids look like sb-xxxxxxxxxxxx',
      });
    }
    // The daemon's sandboxes are the daemon's: a local command goes through it.
    await assertNoOtherDaemon(this.dataDir, `cannot attach to sandbox ${id}`);
    const record = await readVmRecord(this.dataDir.vmRunDir(id));
    const runDir = existingRunDir(this.dataDir, id, record?.uid ?? null);
    if (!record?.sandbox || !isVmAlive(runDir.dir, record.pid)) {
      throw new NotFoundError(
        `sandbox ${id} is not running`,
        { kind: 'sandbox', name: id },
        {
          hint: 'list running sandboxes with `forkd ls`',
        },
      );
    }
    const process = QemuProcess.adopt(record.pid, {
      cmdlineMarker: runDir.dir + '/',
      logPath: runDir.paths.qemuLog,
      consoleLogPath: runDir.paths.consoleLog,
      killOnExit: false,
    });
    const call = { signal: opts.signal, timeoutMs: opts.timeoutMs ?? ATTACH_TIMEOUT_MS };
    const qmp = await QmpClient.connect(runDir.paths.qmpSocket, call);
    try {
      await resumeIfLeftPaused(qmp, call);
      const agent = await AgentClient.connect(runDir.paths.agentSocket, call);
      // Records written before egress policies existed said only whether egress was restricted.
      const legacy = record.sandbox as SandboxInfo & { restrictEgress?: boolean };
      const egress =
        record.sandbox.egress ?? (legacy.restrictEgress === false ? { mode: 'internet' } : DEFAULT_EGRESS);
      const info: SandboxInfo = {
        ...record.sandbox,
        egress,
        hostNetwork: record.sandbox.hostNetwork ?? needsHostNetwork(egress),
      };
      if (runDir.uid !== null) await this.firewall.adopt(runDir.uid, info.egress);
      return new Sandbox(info, { process, qmp, runDir }, agent, await findSandboxCgroup(id), this.firewall);
    } catch (err) {
      qmp.close();
      throw err;
    }
  }

  /**
   * Snapshot a running sandbox into a new tag while it keeps running (live
   * branch). Children of the new tag start from exactly this moment.
   */
  async branch(sandbox: Sandbox, opts: BranchOptions): Promise<BranchResult> {
    assertValidTag(opts.tag);
    // Checked and claimed with no await between: two calls at once must not both pass.
    assertNotBranching(sandbox);
    sandbox.isBranching = true;
    try {
      await this.store.assertTagFree(opts.tag);
      return await branchSandbox(
        { dataDir: this.dataDir, store: this.store, qemu: await this.qemu() },
        sandbox,
        opts,
      );
    } finally {
      sandbox.isBranching = false;
    }
  }

  /**
   * What a pack is checked against before it is unpacked. KVM is only known
   * for sure by booting (fork does that); here a host without /dev/kvm
   * cannot take a KVM snapshot.
   */
  async hostFacts(): Promise<HostFacts> {
    const qemu = await this.qemu();
    return { qemuVersion: qemu.version, kvmUsable: await pathExists('/dev/kvm') };
  }

  /**
   * Write a snapshot as a portable pack file. A diff link becomes a diff pack
   * (its diff only, installed over its ancestors), carrying its ancestors
   * with `withAncestors`, or whole with `selfContained`.
   */
  async pack(
    tag: string,
    opts: Omit<PackOptions, 'dir' | 'snapshot' | 'chain' | 'ancestors'> &
      CallOptions & { selfContained?: boolean; withAncestors?: boolean },
  ): Promise<PackResult> {
    if (opts.selfContained && opts.withAncestors) {
      throw new InvalidArgumentError(
        'a pack is either self-contained or carries its ancestors, not both',
        'with_ancestors',
        {
          hint: 'self-contained: the link alone, flat; with ancestors: the whole chain, each link as a diff',
        },
      );
    }
    const { dir, manifest } = await this.store.getReady(tag);
    const chain = manifest.parent && !opts.selfContained ? await diffPackChain(this.store, tag) : [];
    const ancestors = opts.withAncestors ? await chainSnapshots(this.store, chain) : undefined;
    return packSnapshot({
      ...opts,
      dir,
      snapshot: manifest,
      chain,
      ancestors,
      signal: deadlineSignal(opts, 'packing'),
    });
  }

  /** Unpack a pack stream into this data dir. */
  async unpack(opts: Omit<UnpackOptions, 'store' | 'host'> & CallOptions): Promise<UnpackResult> {
    const signal = deadlineSignal(opts, 'unpacking');
    return unpackPack({ ...opts, signal, store: this.store, host: await this.hostFacts() });
  }

  /** Pull a package from a hub (or a pack URL) into this data dir. */
  async pull(opts: Omit<PullOptions, 'store' | 'host'> & CallOptions): Promise<PullResult> {
    const signal = deadlineSignal(opts, 'pulling');
    return pullPack({ ...opts, signal, store: this.store, host: await this.hostFacts() });
  }

  async cleanup(opts: { killRunning?: boolean } = {}): Promise<CleanupReport> {
    if (opts.killRunning) await assertNoOtherDaemon(this.dataDir, 'cannot stop running sandboxes');
    return cleanupDataDir(this.dataDir, this.store, this.firewall, opts);
  }
}
