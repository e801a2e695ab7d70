// The daemon's live sandboxes, backed by the state database. Sandboxes
// outlive the daemon (their QEMU runs in its own session), so at start-up
// the registry re-attaches to every one still running, marks the ones that
// died while it was away and removes their files, and also takes in
// sandboxes held by `forkd fork --hold`.
import type { Engine, Sandbox } from '../engine/index.js';
import { errorMessage, NotFoundError } from '../errors.js';
import type { StateDb } from './state-db.js';

export class SandboxRegistry {
  private readonly live = new Map<string, Sandbox>();

  constructor(
    private readonly engine: Engine,
    private readonly db: StateDb,
  ) {}

  /**
   * Reconcile the database with what is running. Returns how many sandboxes
   * were re-attached, and the snapshots a previous daemon left half-written
   * (now removed), such as branches it was writing when it stopped.
   */
  async adoptRunning(log: (msg: string) => void): Promise<{ adopted: number; interrupted: string[] }> {
    const running = new Set((await this.engine.sandboxes()).map((s) => s.id));
    for (const row of this.db.sandboxes('running')) {
      if (running.has(row.id)) continue;
      // It died while no daemon watched it: account for it; its files go below.
      this.db.endSandbox(row.id, 'dead');
      log(`sandbox ${row.id} died while the daemon was down`);
    }
    // Run dirs of dead VMs, empty cgroups, snapshots a crash left half-written.
    const report = await this.engine.cleanup();
    for (const id of running) {
      try {
        this.add(await this.engine.attach(id));
      } catch (err) {
        log(`could not re-attach ${id}: ${errorMessage(err)}`);
      }
    }
    return { adopted: this.live.size, interrupted: report.removedSnapshots };
  }

  add(sandbox: Sandbox): void {
    this.live.set(sandbox.id, sandbox);
    this.db.recordSandbox(sandbox.info);
    // A sandbox whose QEMU dies (crashed, killed behind our back) leaves by itself.
    void sandbox.exited.then(async () => {
      if (this.live.get(sandbox.id) !== sandbox) return;
      this.live.delete(sandbox.id);
      this.db.endSandbox(sandbox.id, 'dead');
      await sandbox.kill(); // frees its run dir and cgroup
    });
  }

  get(id: string): Sandbox {
    const sandbox = this.live.get(id);
    if (!sandbox || !sandbox.isAlive) {
      throw new NotFoundError(`sandbox ${JSON.stringify(id)} not found`, { kind: 'sandbox', name: id });
    }
    return sandbox;
  }

  list(): Sandbox[] {
    return [...this.live.values()].filter((s) => s.isAlive);
  }

  get size(): number {
    return this.list().length;
  }

  async kill(id: string): Promise<void> {
    const sandbox = this.get(id);
    this.live.delete(id);
    this.db.endSandbox(id, 'killed');
    await sandbox.kill();
  }

  /** Close channels but leave every VM running: a daemon restart keeps them. */
  async detachAll(): Promise<void> {
    const all = [...this.live.values()];
    this.live.clear();
    await Promise.all(all.map((s) => s.detach()));
  }
}
