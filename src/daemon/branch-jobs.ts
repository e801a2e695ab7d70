// Live branches the daemon runs: at most BRANCH_CONCURRENCY_CAP at once, one
// per tag, optionally in the background (`wait: false`). While a branch is
// written its tag lists as "writing"; a branch that failed lists as "failed"
// with the reason (its files are gone) until the tag is used again.
import { randomBytes } from 'node:crypto';
import type { BranchResult, Engine, Sandbox } from '../engine/index.js';
import { ConflictError, ResourceExhaustedError, errorMessage } from '../errors.js';
import { assertValidTag } from '../snapshot/tag.js';
import type { SnapshotInfo } from '../api/schemas.js';

export const BRANCH_CONCURRENCY_CAP = 4;

interface SandboxBranches {
  count: number;
  lastMemoryPath: string | null;
}

export class BranchJobs {
  private readonly inFlight = new Map<string, { sandboxId: string; startedAt: number }>();
  private readonly failed = new Map<string, { warning: string; at: number }>();
  private readonly perSandbox = new Map<string, SandboxBranches>();

  constructor(
    private readonly engine: Engine,
    readonly cap = BRANCH_CONCURRENCY_CAP,
  ) {}

  get running(): number {
    return this.inFlight.size;
  }

  /** A tag for a branch that was not given one. */
  static defaultTag(sandbox: Sandbox): string {
    return `${sandbox.info.snapshotTag.slice(0, 40)}-br-${randomBytes(4).toString('hex')}`;
  }

  /**
   * Check and start a branch. Resolves with the job, whose `done` settles
   * when the snapshot is ready (or failed); refusals throw at once.
   */
  async start(
    sandbox: Sandbox,
    tag: string,
    opts: { diff?: boolean; diffParent?: string } = {},
  ): Promise<{ done: Promise<BranchResult> }> {
    assertValidTag(tag);
    if (this.inFlight.has(tag))
      throw new ConflictError(`a branch to ${JSON.stringify(tag)} is already in flight`);
    if (this.inFlight.size >= this.cap) {
      throw new ResourceExhaustedError(
        `${this.inFlight.size} branches are in flight (the cap is ${this.cap})`,
        {
          hint: 'retry when one finishes',
        },
      );
    }
    await this.engine.store.assertTagFree(tag);
    this.inFlight.set(tag, { sandboxId: sandbox.id, startedAt: Date.now() });
    this.failed.delete(tag);
    const done = this.engine.branch(sandbox, { tag, diff: opts.diff, diffParent: opts.diffParent }).then(
      (result) => {
        const stats = this.perSandbox.get(sandbox.id) ?? { count: 0, lastMemoryPath: null };
        this.perSandbox.set(sandbox.id, {
          count: stats.count + 1,
          lastMemoryPath: `${this.engine.dataDir.snapshotDir(tag)}/${result.manifest.memory.file}`,
        });
        return result;
      },
      (err: unknown) => {
        this.failed.set(tag, { warning: `branch failed: ${errorMessage(err)}`, at: Date.now() });
        throw err;
      },
    );
    done.finally(() => this.inFlight.delete(tag)).catch(() => undefined);
    return { done };
  }

  /** Refuse to restore a snapshot that is still being written (API-v1: 409). */
  assertNotWriting(tag: string): void {
    if (this.inFlight.has(tag)) {
      throw new ConflictError(`snapshot ${JSON.stringify(tag)} is writing, not ready`, {
        hint: 'wait until GET /v1/snapshots lists it as ready',
      });
    }
  }

  /** Record a branch that cannot finish (e.g. interrupted by a daemon restart). */
  markFailed(tag: string, warning: string): void {
    this.failed.set(tag, { warning, at: Date.now() });
  }

  branchesOf(sandboxId: string): SandboxBranches {
    return this.perSandbox.get(sandboxId) ?? { count: 0, lastMemoryPath: null };
  }

  /**
   * The store's listing with in-flight branches as "writing" and failed ones
   * as "failed". The in-flight set is taken before the store is read: a
   * branch finishing while the store is read would otherwise show its
   * half-written dir ("no readable snapshot.json") as failed.
   */
  async overlay(list: () => Promise<SnapshotInfo[]>): Promise<SnapshotInfo[]> {
    const writing = new Map(this.inFlight);
    const listing = await list();
    for (const [tag, job] of this.inFlight) writing.set(tag, job);
    // A tag in flight is whatever its half-written dir looks like on disk: say "writing" instead.
    const out: SnapshotInfo[] = listing.filter((info) => !writing.has(info.tag));
    const listed = new Set(out.map((i) => i.tag));
    for (const [tag, job] of writing) {
      out.push({
        tag,
        dir: this.engine.dataDir.snapshotDir(tag),
        created_at_unix: Math.floor(job.startedAt / 1000),
        status: 'writing',
        bootable: false,
      });
    }
    for (const [tag, failure] of this.failed) {
      if (!listed.has(tag) && !writing.has(tag)) {
        out.push({
          tag,
          dir: this.engine.dataDir.snapshotDir(tag),
          created_at_unix: Math.floor(failure.at / 1000),
          status: 'failed',
          bootable: false,
          warning: failure.warning,
        });
      }
    }
    return out;
  }
}
