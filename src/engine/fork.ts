// Forking: restore N children from a ready snapshot in parallel. Each child
// maps the snapshot's RAM file privately (copy-on-write per page), gets its
// own disk overlay, user-mode network and agent channel, then fresh entropy
// and the host's time. A child that fails is torn down and reported; the
// others are unaffected.
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { AgentError, InvalidArgumentError, TimeoutError } from '../errors.js';
import { checkRestorable } from '../snapshot/compat.js';
import type { DataDir } from '../snapshot/data-dir.js';
import type { SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotStore } from '../snapshot/store.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { createOverlay } from '../vmm/disk.js';
import { waitAgentAttached } from '../vmm/chardev.js';
import { loadDeviceState } from '../vmm/migration.js';
import { resumeVm } from '../vmm/run-state.js';
import type { QemuInstallation } from '../vmm/qemu-binary.js';
import { AgentClient } from './agent/client.js';
import { machineFor } from './machine-for.js';
import { checkLimits, createSandboxCgroup, type SandboxCgroup, type SandboxLimits } from './cgroups.js';
import { createRunDir, randomId, writeVmRecord, type RunDir } from './run-dir.js';
import { Sandbox } from './sandbox.js';
import { launchVm, unlessExited, type LaunchedVm } from './vm.js';
import { DEFAULT_EGRESS, needsHostNetwork, type EgressPolicy } from './egress.js';
import type { EgressFirewall } from './egress-firewall.js';
import { grantToVm, vmUidsEnabled } from './jail.js';
import { NETWORK_FILE, VARY_FILE, variantEnv, type Variant } from './variants.js';

/** Refuse, before anything starts, a policy this host cannot enforce. */
export function checkEgressSupported(policy: EgressPolicy): void {
  if (needsHostNetwork(policy) && !vmUidsEnabled()) {
    throw new InvalidArgumentError(
      `egress ${policy.mode} needs forkd to run as root with confinement on`,
      'egress',
      {
        hint: 'its firewall keys on a uid per VM, which only root can assign and only a jailed QEMU runs as; use --egress none',
      },
    );
  }
}

/** The quotas a restore asked for, memoryLimitMib folded in. */
export function limitsOf(opts: Pick<RestoreOptions, 'limits' | 'memoryLimitMib'>): SandboxLimits {
  return { ...opts.limits, memoryMib: opts.limits?.memoryMib ?? opts.memoryLimitMib ?? null };
}

/** The uid a sandbox's QEMU runs as; host-network policies are only ever given to VMs with one. */
export function vmUid(runDir: RunDir): number {
  if (runDir.uid === null) throw new Error('a VM on the host network must run as a VM uid');
  return runDir.uid;
}

export const MAX_CHILDREN = 1000;

export interface RestoreOptions extends CallOptions {
  tag: string;
  n: number;
  /** What the children's guests may connect to (default: nothing). */
  egress?: EgressPolicy;
  memoryLimitMib?: number | null;
  /** CPU, pids and disk I/O quotas (and memory, which memoryLimitMib also sets). */
  limits?: SandboxLimits;
  /** Children started at once (default: 4 per core). */
  concurrency?: number;
  /** The variant handed to each child (index → variant): a time-travel fork's `vary`. */
  vary?: (index: number) => Variant | undefined;
  /** Keep children running after this process exits. */
  detach?: boolean;
  /** Take children from the engine's warm pool for this tag first (Engine.prewarm). */
  prewarm?: boolean;
  onChild?: (result: ChildResult) => void;
}

export interface ChildTimings {
  launchMs: number;
  loadMs: number;
  agentMs: number;
  totalMs: number;
}

export type ChildResult =
  | { index: number; ok: true; sandbox: Sandbox; timings: ChildTimings }
  | { index: number; ok: false; error: Error };

export interface RestoreResult {
  children: ChildResult[];
  wallMs: number;
}

export interface ForkContext {
  firewall: EgressFirewall;
  dataDir: DataDir;
  store: SnapshotStore;
  qemu: QemuInstallation;
  kvmUsable: boolean;
  cores: number;
}

export function checkChildCount(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_CHILDREN) {
    throw new InvalidArgumentError(`invalid child count ${String(n)}`, 'n', {
      hint: `use an integer from 1 to ${MAX_CHILDREN}`,
    });
  }
  return n;
}

export async function restoreChildren(
  ctx: ForkContext,
  opts: RestoreOptions,
  mode: { warmOnly?: boolean; firstIndex?: number } = {},
): Promise<RestoreResult> {
  const n = checkChildCount(opts.n);
  checkEgressSupported(opts.egress ?? DEFAULT_EGRESS);
  checkLimits(limitsOf(opts));
  const { dir, manifest } = await ctx.store.getReady(opts.tag);
  checkRestorable(manifest, { qemuVersion: ctx.qemu.version, kvmUsable: ctx.kvmUsable });
  const started = Date.now();
  const children: ChildResult[] = new Array<ChildResult>(n);
  const firstIndex = mode.firstIndex ?? 0;
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const slot = next++;
      const result = await restoreChild(ctx, dir, manifest, firstIndex + slot, opts, mode.warmOnly ?? false);
      children[slot] = result;
      opts.onChild?.(result);
    }
  };
  const concurrency = Math.max(1, Math.min(n, opts.concurrency ?? ctx.cores * 4));
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { children, wallMs: Date.now() - started };
}

async function restoreChild(
  ctx: ForkContext,
  snapshotDir: string,
  manifest: SnapshotManifest,
  index: number,
  opts: RestoreOptions,
  warmOnly: boolean,
): Promise<ChildResult> {
  const t0 = Date.now();
  const id = randomId('sb');
  const egress = opts.egress ?? DEFAULT_EGRESS;
  const limits = limitsOf(opts);
  const runDir = await createRunDir(ctx.dataDir, id);
  let vm: LaunchedVm | undefined;
  let firewalled = false;
  let cgroup: SandboxCgroup | null = null;
  let agent: AgentClient | undefined;
  // Named so a timeout says where the child got stuck.
  let phase = 'creating its disk overlay';
  try {
    const signal = deadlineSignal(
      { signal: opts.signal, timeoutMs: opts.timeoutMs ?? 60_000 },
      `restoring child ${index}`,
    );
    if (manifest.disk) {
      await createOverlay(
        runDir.paths.diskOverlay,
        { path: join(snapshotDir, manifest.disk.layer), format: 'qcow2' },
        { signal },
      );
      await grantToVm(runDir, [runDir.paths.diskOverlay]);
    }
    phase = 'starting QEMU';
    const machine = machineFor({
      qemuBinary: ctx.qemu.binary,
      snapshotDir,
      manifest,
      runDir,
      role: 'child',
      network: { restrictEgress: !needsHostNetwork(egress), hostForwards: [] },
    });
    vm = await launchVm(machine, runDir, {
      signal,
      killOnExit: !opts.detach,
      stateIn: join(snapshotDir, manifest.vmstate.file),
      jail: {
        readOnly: [snapshotDir],
        network: needsHostNetwork(egress) ? 'host' : 'isolated',
        privateRamFile: machine.paths.ramFile,
      },
    });
    const launched = vm;
    const t1 = Date.now();
    phase = 'loading device state';
    await unlessExited(
      launched.process,
      'loading device state',
      loadDeviceState(launched.qmp, { signal, qemuLog: launched.process.logPath }),
    );
    // Before `cont`: the guest never runs outside its quotas.
    phase = 'placing it in its cgroups';
    cgroup = await createSandboxCgroup(id, launched.process.pid, limits, runDir.dir);
    if (needsHostNetwork(egress)) {
      phase = 'opening its egress firewall';
      await ctx.firewall.apply(vmUid(runDir), DEFAULT_EGRESS, egress);
      firewalled = true;
    }
    // Connect before the guest runs: QEMU then never reports the host as
    // gone to the restored guest (it was frozen with a host attached).
    phase = 'connecting to the agent';
    agent = await unlessExited(
      launched.process,
      phase,
      AgentClient.connect(launched.machine.paths.agentSocket, { signal }),
    );
    const connected = agent;
    phase = 'waiting for QEMU to take the agent connection';
    await unlessExited(launched.process, phase, waitAgentAttached(launched.qmp, { signal }));
    phase = 'resuming';
    await resumeVm(launched.qmp, { signal });
    const t2 = Date.now();
    phase = 'waiting for the agent';
    await unlessExited(
      launched.process,
      phase,
      // A pooled child only proves it runs (and warms TCG's code cache); it
      // gets its entropy and clock when it is handed out.
      warmOnly
        ? connected.ping({ signal }).then(() => undefined)
        : handOver(
            connected,
            { variant: opts.vary?.(index), networked: needsHostNetwork(opts.egress ?? DEFAULT_EGRESS) },
            { signal },
          ),
    );
    const t3 = Date.now();
    const info = {
      id,
      snapshotTag: manifest.tag,
      pid: launched.process.pid,
      createdAtUnix: Math.floor(Date.now() / 1000),
      runDir: runDir.dir,
      memoryLimitMib: limits.memoryMib ?? null,
      limits,
      egress,
      hostNetwork: needsHostNetwork(egress),
    };
    // Everything a later process (a restarted daemon) needs to re-attach.
    await writeVmRecord(runDir, {
      pid: info.pid,
      role: 'child',
      startedAt: new Date(t0).toISOString(),
      sandbox: info,
    });
    const sandbox = new Sandbox(info, launched, connected, cgroup, ctx.firewall);
    if (opts.detach) sandbox.release();
    return {
      index,
      ok: true,
      sandbox,
      timings: { launchMs: t1 - t0, loadMs: t2 - t1, agentMs: t3 - t2, totalMs: t3 - t0 },
    };
  } catch (caught) {
    let err = caught;
    if (err instanceof TimeoutError) err.message = `${err.message} while ${phase}`;
    // A QEMU that died closes the agent's socket a moment before its exit is
    // reaped: its own last words say far more than "agent channel closed".
    if (vm && err instanceof AgentError) {
      const proc = vm.process;
      const died = await Promise.race([proc.exited.then(() => true), sleep(500).then(() => false)]);
      if (died) err = await proc.exitError(phase);
    }
    await agent?.close();
    if (vm) {
      vm.qmp.close();
      await vm.process.terminate();
    }
    await cgroup?.remove();
    // A uid still in the firewall is never handed to another VM: its run dir (and claim) stay for `forkd cleanup`.
    const revoked =
      !firewalled ||
      (await ctx.firewall.apply(vmUid(runDir), egress, DEFAULT_EGRESS).then(
        () => true,
        () => false,
      ));
    if (revoked) await runDir.remove();
    else runDir.keepOnExit();
    return { index, ok: false, error: err instanceof Error ? err : new Error(String(err)) };
  }
}

/** What a child is handed besides entropy and the clock. */
export interface HandOver {
  /** A time-travel fork's variant for this child. */
  variant?: Variant | undefined;
  /** Its egress policy lets it reach a network (the browser runtime then restarts Chromium's network service). */
  networked: boolean;
}

/**
 * What makes a restored child its own: fresh entropy (credited, CRNG
 * reseeded), the host's clock, its variant (environment, vary.json), and
 * whether it has a network. Done right before a child is handed to a
 * caller, whether just restored or taken from a pool; the files land
 * before the child's first eval, when its runtime reads them.
 */
export async function handOver(agent: AgentClient, what: HandOver, opts: CallOptions = {}): Promise<void> {
  const { variant } = what;
  const vary = variant === undefined ? undefined : JSON.stringify(variant);
  await agent.hygiene(
    {
      timeUnixNs: BigInt(Date.now()) * 1_000_000n,
      entropy: randomBytes(64),
      vary,
      varyEnv: variant === undefined ? undefined : variantEnv(variant),
    },
    opts,
  );
  if (vary === undefined && !what.networked) return;
  await agent.mkdir(dirname(VARY_FILE), { parents: true }, opts);
  if (vary !== undefined) await agent.writeFile(VARY_FILE, vary, {}, opts);
  if (what.networked) await agent.writeFile(NETWORK_FILE, 'open\n', {}, opts);
}
