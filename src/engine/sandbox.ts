// A sandbox: one child VM restored from a snapshot, with its QEMU process,
// QMP channel, agent channel, run dir and optional memory cgroup. Everything
// the sandbox owns is released by kill(), on every path.
import type { SandboxCgroup, SandboxLimits, SandboxUsage } from './cgroups.js';
import { DEFAULT_EGRESS, needsHostNetwork, type EgressPolicy } from './egress.js';
import { ConflictError } from '../errors.js';
import { readVmRecord, writeVmRecord } from './run-dir.js';
import type { EgressFirewall } from './egress-firewall.js';
import type { AgentClient } from './agent/client.js';
import { destroyVm, type VmHandle } from './vm.js';

export interface SandboxInfo {
  id: string;
  snapshotTag: string;
  pid: number;
  createdAtUnix: number;
  runDir: string;
  memoryLimitMib: number | null;
  /** Its quotas (absent in records written before quotas existed). */
  limits?: SandboxLimits;
  egress: EgressPolicy;
  /**
   * Whether its QEMU shares the host's network namespace (behind the uid
   * firewall). Fixed at spawn: a sandbox spawned with `none` has a namespace
   * of its own with nothing in it, and can never be given a network.
   */
  hostNetwork: boolean;
}

export class Sandbox {
  private killed = false;
  /** Set while a live branch of this sandbox is in flight (one at a time). */
  isBranching = false;

  constructor(
    readonly info: SandboxInfo,
    private readonly vm: VmHandle,
    readonly agent: AgentClient,
    private readonly cgroup: SandboxCgroup | null,
    private readonly firewall: EgressFirewall,
  ) {}

  get id(): string {
    return this.info.id;
  }

  /** The QEMU behind it, for the engine's own use (live branch). */
  get vmHandle(): VmHandle {
    return this.vm;
  }

  get pid(): number {
    return this.info.pid;
  }

  get isAlive(): boolean {
    return !this.killed && !this.vm.process.hasExited;
  }

  /** Resolves when QEMU exits, for whatever reason. */
  get exited(): Promise<unknown> {
    return this.vm.process.exited;
  }

  /** Keep the VM running after this process exits (forkd fork --hold, the daemon). */
  release(): void {
    this.vm.process.release();
    this.vm.runDir.keepOnExit();
  }

  /**
   * Leave the VM running and let go of it entirely: close the agent and QMP
   * channels so this process can exit. A later process re-attaches through
   * the sockets in the run dir.
   */
  async detach(): Promise<void> {
    this.release();
    this.vm.qmp.close();
    await this.agent.close();
  }

  async kill(): Promise<void> {
    if (this.killed) return;
    this.killed = true;
    await Promise.all([this.agent.close(), destroyVm(this.vm, () => this.closeEgress())]);
    await this.cgroup?.remove();
  }

  /** CPU time, memory and disk I/O its QEMU has used (null where the host has no cgroups). */
  usage(): Promise<SandboxUsage | null> {
    return this.cgroup ? this.cgroup.usage() : Promise.resolve(null);
  }

  /** Change what the guest may reach, at once (connections already open stay open). */
  async setEgress(policy: EgressPolicy): Promise<void> {
    if (needsHostNetwork(policy) && !this.info.hostNetwork) {
      throw new ConflictError(
        `sandbox ${this.id} was spawned with egress none: its QEMU has no network to open`,
        {
          hint: 'spawn it with the policy it may need (e.g. --egress internet), then narrow it to none at any time',
        },
      );
    }
    const uid = this.vm.runDir.uid;
    if (uid !== null) await this.firewall.apply(uid, this.info.egress, policy);
    this.info.egress = policy;
    const record = await readVmRecord(this.vm.runDir.dir);
    if (record) await writeVmRecord(this.vm.runDir, { ...record, sandbox: this.info });
  }

  /** Take the sandbox's uid out of the firewall before the uid can be given to another VM. */
  private async closeEgress(): Promise<void> {
    const uid = this.vm.runDir.uid;
    if (uid === null) return;
    await this.firewall.apply(uid, this.info.egress, DEFAULT_EGRESS);
  }
}
