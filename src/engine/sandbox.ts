// A sandbox: one child VM restored from a snapshot, with its QEMU process,
// QMP channel, agent channel, run dir and optional memory cgroup. Everything
// the sandbox owns is released by kill(), on every path.
import type { MemoryCgroup } from './memory-limit.js';
import type { AgentClient } from './agent/client.js';
import { destroyVm, type VmHandle } from './vm.js';

export interface SandboxInfo {
  id: string;
  snapshotTag: string;
  pid: number;
  createdAtUnix: number;
  runDir: string;
  memoryLimitMib: number | null;
  restrictEgress: boolean;
}

export class Sandbox {
  private killed = false;
  /** Set while a live branch of this sandbox is in flight (one at a time). */
  isBranching = false;

  constructor(
    readonly info: SandboxInfo,
    private readonly vm: VmHandle,
    readonly agent: AgentClient,
    private readonly cgroup: MemoryCgroup | null,
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
    await Promise.all([this.agent.close(), destroyVm(this.vm)]);
    await this.cgroup?.remove();
  }
}
