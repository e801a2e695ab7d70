// Workspaces: named sandboxes that can be suspended and resumed. Suspend is a
// live branch into a state snapshot, then the sandbox is killed; resume forks
// that state with the workspace's memory limit and egress setting. Each state
// is a diff link of the previous one (the first of the source snapshot), so a
// state ships as what changed since the last suspend; after
// WORKSPACE_STATE_HISTORY states the next one starts over as a diff of the
// source and the old ones go, which bounds the disk a workspace holds. A
// workspace's states are its own and go with it; the snapshot it started
// from never does. Rows live in the state database, so workspaces survive
// restarts.
import { formatEgress, parseEgress, type EgressPolicy, type SandboxLimits } from '../engine/index.js';
import { randomBytes } from 'node:crypto';
import type { Sandbox } from '../engine/index.js';
import { AlreadyExistsError, ConflictError, NotFoundError, errorMessage } from '../errors.js';
import { assertValidTag } from '../snapshot/tag.js';
import { chainInfo } from '../snapshot/chain.js';
import type { WorkspaceInfo } from '../api/schemas.js';
import type { DaemonContext } from './context.js';
import { HttpError } from './http-errors.js';
import type { WorkspaceRow } from './state-db.js';

/** States a workspace keeps as a chain of diffs before the next suspend starts over from its source. */
export const WORKSPACE_STATE_HISTORY = 3;

export class Workspaces {
  constructor(
    private readonly ctx: DaemonContext,
    private readonly log: (message: string) => void = () => undefined,
  ) {}

  list(): WorkspaceInfo[] {
    return this.ctx.db.workspaces().map((row) => this.info(row));
  }

  get(name: string): WorkspaceInfo {
    return this.info(this.row(name));
  }

  async create(body: {
    name: string;
    snapshotTag: string;
    limits: SandboxLimits;
    egress: EgressPolicy;
  }): Promise<WorkspaceInfo> {
    assertValidTag(body.name, 'name');
    assertValidTag(body.snapshotTag, 'snapshot_tag');
    if (this.ctx.db.workspace(body.name)) {
      throw new AlreadyExistsError(`workspace ${body.name} already exists`, {
        kind: 'workspace',
        name: body.name,
      });
    }
    const sandbox = await this.spawn(body.snapshotTag, body.limits, body.egress);
    const now = Math.floor(Date.now() / 1000);
    this.ctx.db.insertWorkspace({
      id: `ws-${randomBytes(6).toString('hex')}`,
      name: body.name,
      source_snapshot_tag: body.snapshotTag,
      current_state_tag: null,
      status: 'running',
      live_sandbox_id: sandbox.id,
      memory_limit_mib: body.limits.memoryMib ?? null,
      limits: JSON.stringify(body.limits),
      restrict_egress: body.egress.mode === 'none' ? 1 : 0,
      egress: formatEgress(body.egress),
      created_at_unix: now,
      last_active_unix: now,
    });
    return this.get(body.name);
  }

  /**
   * Branch the live sandbox into a new state snapshot, a diff of the previous
   * state (or, every WORKSPACE_STATE_HISTORY states, of the source, the old
   * states then removed; with `diff: false` whole, the old states removed),
   * then kill it.
   */
  async suspend(name: string, opts: { diff?: boolean | undefined } = {}): Promise<WorkspaceInfo> {
    const row = this.row(name);
    const sandbox = this.liveSandbox(row);
    if (!sandbox) throw new ConflictError(`workspace ${name} is ${this.status(row)}, not running`);
    const history = await this.states(row);
    const startOver = history.length >= WORKSPACE_STATE_HISTORY;
    const parent = row.current_state_tag && !startOver ? row.current_state_tag : row.source_snapshot_tag;
    // Written whole when asked (diff: false), or when the source is gone (removed before states were diffs).
    const diff = (opts.diff ?? true) && (await this.ctx.engine.store.exists(parent));
    const tag = stateTag(name);
    const { done } = await this.ctx.branches.start(sandbox, tag, diff ? { diff, diffParent: parent } : {});
    await done;
    await this.ctx.registry.kill(sandbox.id);
    this.ctx.db.updateWorkspace(name, { status: 'suspended', live_sandbox_id: null, current_state_tag: tag });
    // Kept: the states the new one is a diff of. The rest go, newest first (nothing depends on a leaf).
    if (startOver || !diff) await this.removeStates(history);
    return this.get(name);
  }

  /** The workspace's state snapshots, oldest first: the current state and its ancestors after the source. */
  private async states(row: WorkspaceRow): Promise<string[]> {
    const current = row.current_state_tag;
    if (!current || !(await this.ctx.engine.store.exists(current))) return [];
    const { ancestors } = await chainInfo(this.ctx.engine.store, current);
    const afterSource = ancestors.indexOf(row.source_snapshot_tag);
    return [...(afterSource === -1 ? [] : ancestors.slice(afterSource + 1)), current];
  }

  private async removeStates(states: readonly string[]): Promise<void> {
    for (const tag of [...states].reverse()) await this.removeState(tag);
  }

  /** Fork the saved state again, with the workspace's memory limit. */
  async resume(name: string): Promise<WorkspaceInfo> {
    const row = this.row(name);
    if (this.status(row) === 'running') throw new ConflictError(`workspace ${name} is already running`);
    const from = row.current_state_tag ?? row.source_snapshot_tag;
    const sandbox = await this.spawn(from, limitsOf(row), egressOf(row));
    this.ctx.db.updateWorkspace(name, {
      status: 'running',
      live_sandbox_id: sandbox.id,
      current_state_tag: row.current_state_tag,
    });
    return this.get(name);
  }

  /** Kill its sandbox and remove its state snapshots; the source snapshot stays. */
  async delete(name: string): Promise<void> {
    const row = this.row(name);
    const sandbox = this.liveSandbox(row);
    if (sandbox) await this.ctx.registry.kill(sandbox.id);
    await this.removeStates(await this.states(row));
    this.ctx.db.deleteWorkspace(name);
  }

  private async spawn(tag: string, limits: SandboxLimits, egress: EgressPolicy): Promise<Sandbox> {
    this.ctx.branches.assertNotWriting(tag);
    const result = await this.ctx.engine.fork({ tag, n: 1, limits, egress, detach: true });
    const child = result.children[0];
    if (!child?.ok) throw new HttpError(500, `the workspace's sandbox failed: ${errorMessage(child?.error)}`);
    this.ctx.registry.add(child.sandbox);
    return child.sandbox;
  }

  private async removeState(tag: string): Promise<void> {
    // The tag may be briefly locked by other work on it: wait that out.
    await this.ctx.engine.store.remove(tag, { waitForLockMs: 5000 }).catch((err: unknown) => {
      if (!(err instanceof NotFoundError))
        this.log(`could not remove workspace state ${tag}: ${errorMessage(err)}`);
    });
  }

  private row(name: string): WorkspaceRow {
    assertValidTag(name, 'name');
    const row = this.ctx.db.workspace(name);
    if (!row) throw new NotFoundError(`workspace ${name} not found`, { kind: 'workspace', name });
    return row;
  }

  private liveSandbox(row: WorkspaceRow): Sandbox | null {
    if (row.status !== 'running' || !row.live_sandbox_id) return null;
    return this.ctx.registry.list().find((s) => s.id === row.live_sandbox_id) ?? null;
  }

  /** "stale": the database says running but its sandbox is gone (it died, or was killed directly). */
  private status(row: WorkspaceRow): WorkspaceInfo['status'] {
    if (row.status === 'running' && !this.liveSandbox(row)) return 'stale';
    return row.status;
  }

  private info(row: WorkspaceRow): WorkspaceInfo {
    const status = this.status(row);
    return {
      id: row.id,
      name: row.name,
      source_snapshot_tag: row.source_snapshot_tag,
      ...(row.current_state_tag ? { current_state_tag: row.current_state_tag } : {}),
      status,
      ...(status === 'running' && row.live_sandbox_id ? { live_sandbox_id: row.live_sandbox_id } : {}),
      created_at_unix: row.created_at_unix,
      last_active_unix: row.last_active_unix,
    };
  }
}

/** A fresh state tag per suspend: the old state stays restorable until the new one is ready. */
function stateTag(name: string): string {
  return `ws-${name.slice(0, 48)}-${randomBytes(4).toString('hex')}`;
}

/** A workspace's policy; rows from before policies existed had only "restricted or not". */
function egressOf(row: WorkspaceRow): EgressPolicy {
  if (row.egress !== null) return parseEgress(row.egress);
  return parseEgress(row.restrict_egress === 1 ? 'none' : 'internet');
}

/** A workspace's quotas; rows from before quotas existed had only a memory limit. */
function limitsOf(row: WorkspaceRow): SandboxLimits {
  const stored = row.limits ? (JSON.parse(row.limits) as SandboxLimits) : {};
  return { ...stored, memoryMib: stored.memoryMib ?? row.memory_limit_mib };
}
