// The daemon's live sandboxes. Sandboxes outlive the daemon (their QEMU runs
// in its own session and their run dir records what is needed to find them),
// so at start-up the registry re-attaches to every one still running.
// TODO(issue 3): persist in SQLite and reconcile with run dirs.
import type { Engine, Sandbox } from '../engine/index.js';
import { errorMessage, NotFoundError } from '../errors.js';

export class SandboxRegistry {
  private readonly live = new Map<string, Sandbox>();

  constructor(private readonly engine: Engine) {}

  /** Re-attach to sandboxes left running by an earlier daemon; returns how many. */
  async adoptRunning(log: (msg: string) => void): Promise<number> {
    for (const info of await this.engine.sandboxes()) {
      try {
        this.add(await this.engine.attach(info.id));
      } catch (err) {
        log(`could not re-attach ${info.id}: ${errorMessage(err)}`);
      }
    }
    return this.live.size;
  }

  add(sandbox: Sandbox): void {
    this.live.set(sandbox.id, sandbox);
    // A sandbox whose QEMU dies (killed, crashed) leaves the registry by itself.
    void sandbox.exited.then(() => {
      if (this.live.get(sandbox.id) === sandbox) this.live.delete(sandbox.id);
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
    await sandbox.kill();
  }

  /** Close channels but leave every VM running: a daemon restart keeps them. */
  async detachAll(): Promise<void> {
    const all = [...this.live.values()];
    this.live.clear();
    await Promise.all(all.map((s) => s.detach()));
  }
}
