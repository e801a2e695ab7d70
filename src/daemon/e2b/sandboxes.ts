// E2B sandboxes over forkd's: create from a template (a snapshot tag, or a
// recipe built on first use), deadlines (killed, or paused when asked, at
// their end of life, as E2B does), pause (a live branch into a state
// snapshot, then the VM goes) and resume (a restore of that state), fork
// (a live branch of the running sandbox, then `count` restores, each
// reported on its own) and kill. Snapshots this layer makes (pause states,
// fork points) are counted by the records that use them and removed with
// the last one: a child's memory maps its snapshot, and branching it later
// needs that snapshot on disk.
import { randomBytes } from 'node:crypto';
import type { EgressPolicy, Sandbox } from '../../engine/index.js';
import { parseEgress } from '../../engine/index.js';
import { errorMessage, ResourceExhaustedError } from '../../errors.js';
import type { DaemonContext } from '../context.js';
import { toHttpError } from '../http-errors.js';
import { syncSnapshotTable } from '../snapshot-sync.js';
import type { E2bRecord } from './records.js';
import { E2B_HOME, EnvdError, type E2bLookup } from './target.js';

/** E2B's default sandbox lifetime when create names none. */
export const DEFAULT_TIMEOUT_SECS = 300;
/** E2B's longest lifetime (Pro): 24 hours. */
export const MAX_TIMEOUT_SECS = 86_400;
/** E2B's templates by the names its SDKs default to, served by forkd's warm Python parent. */
export const TEMPLATE_ALIASES: Readonly<Record<string, string>> = {
  base: 'python-numpy',
  'code-interpreter-v1': 'python-numpy',
};
/** E2B's most forks per call. */
export const MAX_FORK_COUNT = 100;
/** Running E2B sandboxes at once unless the daemon says otherwise (E2B's plans cap concurrency too). */
export const DEFAULT_MAX_SANDBOXES = 100;

export interface CreateRequest {
  templateId: string;
  timeoutSecs?: number | undefined;
  metadata?: Record<string, string> | undefined;
  envs?: Record<string, string> | undefined;
  internet?: boolean | undefined;
  autoPause?: boolean | undefined;
  publicTraffic?: boolean | undefined;
}

interface TemplateFacts {
  bash: boolean;
  home: boolean;
}

/** One fork's outcome, allSettled-style. */
export type ForkOutcome = { ok: true; record: E2bRecord } | { ok: false; status: number; message: string };

function newId(): string {
  // Lowercase letters and digits only: it is also a DNS label in `<port>-<id>.<domain>`.
  return `i${randomBytes(10).toString('hex')}`;
}

function token(): string {
  return randomBytes(24).toString('base64url');
}

export function checkTimeout(secs: number | undefined): number {
  const t = secs ?? DEFAULT_TIMEOUT_SECS;
  if (!Number.isInteger(t) || t < 1 || t > MAX_TIMEOUT_SECS)
    throw new EnvdError(400, `timeout must be 1..${MAX_TIMEOUT_SECS} seconds, got ${String(secs)}`);
  return t;
}

export class E2bSandboxes implements E2bLookup {
  private readonly records = new Map<string, E2bRecord>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly builds = new Map<string, Promise<void>>();
  /** Ids being paused, resumed or killed: their sandbox comes and goes. */
  private readonly busy = new Set<string>();
  /** What a template's root filesystem has, by `tag@createdAt`: every child of a snapshot starts with the same one. */
  private readonly templateFacts = new Map<string, TemplateFacts>();

  constructor(
    private readonly ctx: DaemonContext,
    private readonly opts: {
      maxSandboxes?: number | undefined;
      log?: ((message: string) => void) | undefined;
      /** Called when a record goes: what else keeps per-sandbox state drops it. */
      onForget?: (id: string) => void;
    } = {},
  ) {
    for (const record of ctx.db.e2bRecords()) {
      this.records.set(record.id, record);
      this.schedule(record);
    }
  }

  get maxSandboxes(): number {
    return this.opts.maxSandboxes ?? DEFAULT_MAX_SANDBOXES;
  }

  private log(message: string): void {
    this.opts.log?.(message);
  }

  /** A record, or null; a running one whose VM died is dropped here (it cannot come back). */
  record(id: string): E2bRecord | null {
    const record = this.records.get(id);
    if (!record) return null;
    if (record.state === 'running' && !this.busy.has(id) && !this.liveSandbox(record)) {
      this.log(`e2b sandbox ${id}: its VM is gone, dropped`);
      void this.forget(record);
      return null;
    }
    return record;
  }

  liveSandbox(record: E2bRecord): Sandbox | null {
    if (record.state !== 'running' || !record.sandboxId) return null;
    return this.ctx.registry.list().find((s) => s.id === record.sandboxId) ?? null;
  }

  list(): E2bRecord[] {
    return [...this.records.keys()].flatMap((id) => {
      const r = this.record(id);
      return r ? [r] : [];
    });
  }

  private runningCount(): number {
    return this.list().filter((r) => r.state === 'running').length;
  }

  private require(id: string): E2bRecord {
    const record = this.record(id);
    if (!record) throw new EnvdError(404, `sandbox ${id} not found`);
    return record;
  }

  private save(record: E2bRecord): void {
    this.records.set(record.id, record);
    this.ctx.db.putE2bRecord(record);
    this.schedule(record);
  }

  /** The deadline: kill (or pause, when asked) at endAt. */
  private schedule(record: E2bRecord): void {
    clearTimeout(this.timers.get(record.id));
    this.timers.delete(record.id);
    if (record.state !== 'running') return;
    const due = Math.max(0, record.endAtMs - Date.now());
    // setTimeout's delay is a 32-bit int; a day fits, the guard is for clock jumps.
    const timer = setTimeout(() => void this.expire(record.id), Math.min(due, 2 ** 31 - 1));
    timer.unref();
    this.timers.set(record.id, timer);
  }

  private async expire(id: string): Promise<void> {
    const record = this.records.get(id);
    if (!record || record.state !== 'running') return;
    if (record.endAtMs > Date.now() + 1000) return this.schedule(record);
    try {
      if (record.autoPause) await this.pause(id);
      else await this.kill(id);
      this.log(`e2b sandbox ${id} reached its deadline: ${record.autoPause ? 'paused' : 'killed'}`);
    } catch (err) {
      this.log(`e2b sandbox ${id} deadline: ${errorMessage(err)}`);
    }
  }

  /** The snapshot tag a template names, building a built-in recipe's snapshot on first use. */
  async resolveTemplate(templateId: string): Promise<string> {
    const store = this.ctx.engine.store;
    if (await store.exists(templateId)) return templateId;
    const tag = TEMPLATE_ALIASES[templateId] ?? templateId;
    if (await store.exists(tag)) return tag;
    if (!this.ctx.engine.isBuiltinRecipe(tag)) {
      throw new EnvdError(
        404,
        `template ${templateId} not found: name a snapshot tag (forkd snapshot --tag ${templateId} ...) or a built-in recipe`,
      );
    }
    let build = this.builds.get(tag);
    if (!build) {
      this.log(`e2b template ${templateId}: building snapshot ${tag} from its recipe`);
      build = this.ctx.engine
        .createSnapshot({ tag, recipe: tag })
        .then(() => syncSnapshotTable(this.ctx.engine, this.ctx.db))
        .finally(() => this.builds.delete(tag));
      this.builds.set(tag, build);
    }
    await build;
    return tag;
  }

  private assertCapacity(adding: number): void {
    const running = this.runningCount();
    if (running + adding > this.maxSandboxes) {
      throw new ResourceExhaustedError(
        `${running} E2B sandboxes are running and the limit is ${this.maxSandboxes}`,
        { hint: 'kill one, or start the daemon with a higher --e2b-max-sandboxes' },
      );
    }
  }

  private async restore(tag: string, internet: boolean): Promise<Sandbox> {
    this.ctx.branches.assertNotWriting(tag);
    const result = await this.ctx.engine.fork({ tag, n: 1, egress: egressFor(internet), detach: true });
    const child = result.children[0];
    if (!child?.ok) throw child?.error ?? new Error('the restore produced no sandbox');
    this.ctx.registry.add(child.sandbox);
    return child.sandbox;
  }

  /**
   * E2B's user home exists in every sandbox (commands start there, relative
   * paths resolve there). What the template has is probed once per snapshot;
   * a template without the home pays a mkdir per create (make the snapshot
   * with /home/user to spare it).
   */
  private async prepare(tag: string, sandbox: Sandbox): Promise<TemplateFacts> {
    const key = `${tag}@${(await this.ctx.engine.store.getReady(tag)).manifest.createdAt}`;
    let facts = this.templateFacts.get(key);
    if (!facts) {
      const exists = (path: string) =>
        sandbox.agent.stat(path, { timeoutMs: 10_000 }).then(
          () => true,
          () => false,
        );
      const [bash, home] = await Promise.all([exists('/bin/bash'), exists(E2B_HOME)]);
      facts = { bash, home };
      this.templateFacts.set(key, facts);
    }
    if (!facts.home) await sandbox.agent.mkdir(E2B_HOME, { parents: true }, { timeoutMs: 10_000 });
    return facts;
  }

  async create(req: CreateRequest): Promise<E2bRecord> {
    const timeoutSecs = checkTimeout(req.timeoutSecs);
    this.assertCapacity(1);
    const tag = await this.resolveTemplate(req.templateId);
    const internet = req.internet ?? false;
    const sandbox = await this.restore(tag, internet);
    let facts: TemplateFacts;
    try {
      facts = await this.prepare(tag, sandbox);
    } catch (err) {
      await this.ctx.registry.kill(sandbox.id).catch(() => undefined);
      throw err;
    }
    const now = Date.now();
    const record: E2bRecord = {
      id: newId(),
      templateId: req.templateId,
      snapshotTag: tag,
      snapshotOwned: false,
      sandboxId: sandbox.id,
      state: 'running',
      metadata: req.metadata ?? {},
      envs: req.envs ?? {},
      envdAccessToken: token(),
      trafficAccessToken: token(),
      startedAtMs: now,
      endAtMs: now + timeoutSecs * 1000,
      internet,
      autoPause: req.autoPause ?? false,
      hasBash: facts.bash,
      publicTraffic: req.publicTraffic ?? true,
    };
    this.save(record);
    return record;
  }

  setTimeout(id: string, timeoutSecs: number): void {
    const record = this.require(id);
    if (record.state !== 'running') throw new EnvdError(409, `sandbox ${id} is paused: connect to it first`);
    this.save({ ...record, endAtMs: Date.now() + checkTimeout(timeoutSecs) * 1000 });
  }

  async kill(id: string): Promise<void> {
    const record = this.require(id);
    this.busy.add(id);
    try {
      const sandbox = this.liveSandbox(record);
      if (sandbox) await this.ctx.registry.kill(sandbox.id).catch(() => undefined);
      await this.forget(record);
    } finally {
      this.busy.delete(id);
    }
  }

  /** Drop a record and the snapshot it alone used. */
  private async forget(record: E2bRecord): Promise<void> {
    clearTimeout(this.timers.get(record.id));
    this.timers.delete(record.id);
    this.records.delete(record.id);
    this.opts.onForget?.(record.id);
    this.ctx.db.deleteE2bRecord(record.id);
    await this.release(record.snapshotTag, record.snapshotOwned);
  }

  /** Remove a snapshot this layer made once no record uses it. */
  private async release(tag: string, owned: boolean): Promise<void> {
    if (!owned || [...this.records.values()].some((r) => r.snapshotTag === tag)) return;
    await this.ctx.engine.store.remove(tag, { waitForLockMs: 5000 }).catch((err: unknown) => {
      this.log(`could not remove e2b snapshot ${tag}: ${errorMessage(err)}`);
    });
    await syncSnapshotTable(this.ctx.engine, this.ctx.db);
  }

  /** Pause: false when it already was. */
  async pause(id: string): Promise<boolean> {
    const record = this.require(id);
    if (record.state === 'paused') return false;
    if (this.busy.has(id)) throw new EnvdError(409, `sandbox ${id} is being changed; retry`);
    const sandbox = this.liveSandbox(record);
    if (!sandbox) throw new EnvdError(502, `sandbox ${id} is not running`);
    this.busy.add(id);
    try {
      const tag = `e2b-${id}-p${randomBytes(3).toString('hex')}`;
      await (
        await this.ctx.branches.start(sandbox, tag)
      ).done;
      await this.ctx.registry.kill(sandbox.id).catch(() => undefined);
      const previous = record;
      this.save({ ...record, state: 'paused', sandboxId: null, snapshotTag: tag, snapshotOwned: true });
      await this.release(previous.snapshotTag, previous.snapshotOwned);
      return true;
    } finally {
      this.busy.delete(id);
    }
  }

  /** Connect: a running sandbox's deadline is extended (never shortened); a paused one is resumed. */
  async connect(
    id: string,
    timeoutSecs: number | undefined,
  ): Promise<{ record: E2bRecord; resumed: boolean }> {
    const record = this.require(id);
    const secs = checkTimeout(timeoutSecs);
    if (record.state === 'running') {
      const endAtMs = Math.max(record.endAtMs, Date.now() + secs * 1000);
      const next = { ...record, endAtMs };
      this.save(next);
      return { record: next, resumed: false };
    }
    if (this.busy.has(id)) throw new EnvdError(409, `sandbox ${id} is being changed; retry`);
    this.assertCapacity(1);
    this.busy.add(id);
    try {
      const sandbox = await this.restore(record.snapshotTag, record.internet);
      const next: E2bRecord = {
        ...record,
        state: 'running',
        sandboxId: sandbox.id,
        endAtMs: Date.now() + secs * 1000,
      };
      this.save(next);
      return { record: next, resumed: true };
    } finally {
      this.busy.delete(id);
    }
  }

  /**
   * Fork a running sandbox `count` ways: one live branch (the source pauses
   * for the copy and goes on, id and deadline unchanged), then `count`
   * restores. Each fork succeeds or fails on its own; forks past the
   * concurrency limit fail with 429, as E2B's would.
   */
  async fork(id: string, count: number, timeoutSecs: number | undefined): Promise<ForkOutcome[]> {
    const source = this.require(id);
    const secs = checkTimeout(timeoutSecs);
    const sandbox = this.liveSandbox(source);
    if (!sandbox) throw new EnvdError(source.state === 'paused' ? 409 : 502, `sandbox ${id} is not running`);
    const room = Math.max(0, this.maxSandboxes - this.runningCount());
    const allowed = Math.min(count, room);
    const refused: ForkOutcome = {
      ok: false,
      status: 429,
      message: `the limit of ${this.maxSandboxes} running E2B sandboxes is reached`,
    };
    if (allowed === 0) return Array.from({ length: count }, () => refused);
    const tag = `e2b-${id}-f${randomBytes(3).toString('hex')}`;
    await (
      await this.ctx.branches.start(sandbox, tag)
    ).done;
    const result = await this.ctx.engine.fork({
      tag,
      n: allowed,
      egress: sandbox.info.egress,
      limits: sandbox.info.limits,
      detach: true,
    });
    const now = Date.now();
    const outcomes: ForkOutcome[] = result.children.map((child) => {
      if (!child.ok) {
        const { status, message } = toHttpError(child.error);
        return { ok: false, status, message };
      }
      this.ctx.registry.add(child.sandbox);
      const record: E2bRecord = {
        ...source,
        id: newId(),
        snapshotTag: tag,
        snapshotOwned: true,
        sandboxId: child.sandbox.id,
        state: 'running',
        envdAccessToken: token(),
        trafficAccessToken: token(),
        startedAtMs: now,
        endAtMs: now + secs * 1000,
      };
      this.save(record);
      return { ok: true, record };
    });
    await syncSnapshotTable(this.ctx.engine, this.ctx.db);
    // No fork took: nothing uses the fork point.
    await this.release(tag, true);
    return [...outcomes, ...Array.from({ length: count - allowed }, () => refused)];
  }

  /** The shell E2B's commands ask for (`/bin/bash`), or busybox's `sh` in guests without bash. */
  shellFor(record: E2bRecord): string {
    return record.hasBash === false ? '/bin/sh' : '/bin/bash';
  }

  close(): void {
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
  }
}

function egressFor(internet: boolean): EgressPolicy {
  return parseEgress(internet ? 'internet' : 'none');
}
