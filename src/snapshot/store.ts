// The snapshot store: snapshots/<tag>/ directories with their manifests. A
// snapshot is created under its tag lock with status "writing" and either
// committed ("ready") or removed whole, so a failure never leaves half a
// snapshot that could be restored.
import { rmSync } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { onProcessExit } from '../util/cleanup.js';
import { join } from 'node:path';
import { AlreadyExistsError, ConflictError, CorruptError, NotFoundError } from '../errors.js';
import { DataDir } from './data-dir.js';
import { isProcessAlive, lockFile, lockFileWaiting, type TagLock } from './lock.js';
import {
  MANIFEST_FILE,
  readManifest,
  SNAPSHOT_FILES,
  writeManifest,
  type SnapshotManifest,
} from './manifest.js';
import { linkOrCopy, syncToDisk } from '../util/files.js';
import { assertValidTag, isValidTag } from './tag.js';
import { assertNoDependents } from './chain.js';

export interface SnapshotRecord {
  tag: string;
  dir: string;
  /** null when the manifest is missing or unreadable (a crashed write). */
  manifest: SnapshotManifest | null;
  problem?: string;
}

export class SnapshotWriter {
  private finished = false;
  /** An interrupted write leaves nothing: the dir and the lock go on exit. */
  private readonly forget: () => void;

  constructor(
    private readonly store: SnapshotStore,
    readonly tag: string,
    readonly dir: string,
    private readonly lock: TagLock,
  ) {
    this.forget = onProcessExit(() => {
      rmSync(dir, { recursive: true, force: true });
      lock.releaseSync();
    });
  }

  path(file: string): string {
    return join(this.dir, file);
  }

  /**
   * Write the final manifest with status "ready" and release the tag. A
   * link becomes ready only while its parent is held and still the one it
   * names (parentHeld).
   */
  async commit(manifest: SnapshotManifest): Promise<SnapshotManifest> {
    const ready = { ...manifest, status: 'ready' as const };
    await this.store.parentHeld(ready.parent, () => writeManifest(this.dir, ready));
    this.finished = true;
    this.forget();
    await this.lock.release();
    return ready;
  }

  /** Remove everything written so far and release the tag. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.forget();
    await rm(this.dir, { recursive: true, force: true });
    await this.lock.release();
  }
}

/**
 * A directory beside the snapshots where a whole snapshot is assembled (an
 * unpack) and then installed under its tag with one rename. Invisible to
 * list() and removed on failure or exit; its name carries the owner's pid so
 * `forkd cleanup` can tell a dead one from a live one.
 */
export class StagedSnapshot {
  private finished = false;
  private readonly forget: () => void;

  constructor(
    readonly dir: string,
    private readonly store: SnapshotStore,
  ) {
    this.forget = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  }

  path(file: string): string {
    return join(this.dir, file);
  }

  /**
   * Move the staged snapshot into place as `tag`; with `replace`, an existing
   * one goes. A link (`parent`) is moved in only while its parent is held and
   * still the one it names (parentHeld).
   */
  async install(
    tag: string,
    opts: { replace?: boolean; parent?: SnapshotManifest['parent'] } = {},
  ): Promise<void> {
    assertValidTag(tag);
    await this.store.parentHeld(opts.parent, () => this.moveInto(tag, opts.replace ?? false));
  }

  private async moveInto(tag: string, replace: boolean): Promise<void> {
    const lock = await lockFile(this.store.lockPath(tag), `snapshot ${JSON.stringify(tag)}`);
    try {
      const target = this.store.dataDir.snapshotDir(tag);
      let displaced: string | null = null;
      if (await this.store.exists(tag)) {
        if (!replace) await this.store.assertTagFree(tag);
        displaced = join(
          this.store.dataDir.snapshotsDir,
          `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}-old`,
        );
        await rename(target, displaced);
      }
      await rename(this.dir, target);
      await syncToDisk(this.store.dataDir.snapshotsDir, []); // the rename itself
      this.finished = true;
      this.forget();
      if (displaced) await rm(displaced, { recursive: true, force: true });
    } finally {
      await lock.release();
    }
  }

  /** Remove everything staged. Safe to call twice, and after install. */
  async discard(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.forget();
    await rm(this.dir, { recursive: true, force: true });
  }
}

export const STAGING_PREFIX = '.staging-';
const DIFF_FILES: readonly string[] = [SNAPSHOT_FILES.memoryDiff, SNAPSHOT_FILES.diskDiff];

export class SnapshotStore {
  constructor(readonly dataDir: DataDir) {}

  /** @internal the lock file of a tag, shared with StagedSnapshot. */
  lockPath(tag: string): string {
    return join(this.dataDir.snapshotsDir, '.locks', `${tag}.lock`);
  }

  async list(): Promise<SnapshotRecord[]> {
    const names = await readdir(this.dataDir.snapshotsDir).catch(() => [] as string[]);
    const records: SnapshotRecord[] = [];
    for (const name of names.sort()) {
      if (!isValidTag(name)) continue; // .locks and temp entries
      records.push(await this.record(name));
    }
    return records;
  }

  private async record(tag: string): Promise<SnapshotRecord> {
    const dir = this.dataDir.snapshotDir(tag);
    try {
      return { tag, dir, manifest: await readManifest(dir) };
    } catch (err) {
      const problem = err instanceof CorruptError ? err.message : `no readable ${MANIFEST_FILE}`;
      return { tag, dir, manifest: null, problem };
    }
  }

  async exists(tag: string): Promise<boolean> {
    return stat(this.dataDir.snapshotDir(tag)).then(
      () => true,
      () => false,
    );
  }

  async get(tag: string): Promise<SnapshotRecord> {
    assertValidTag(tag);
    if (!(await this.exists(tag))) {
      throw new NotFoundError(
        `snapshot ${JSON.stringify(tag)} not found`,
        { kind: 'snapshot', name: tag },
        {
          hint: 'list snapshots with `forkd images`, create one with `forkd snapshot --tag T --image tiny`',
        },
      );
    }
    return this.record(tag);
  }

  /** The manifest of a snapshot that may be restored; throws unless it is ready. */
  async getReady(tag: string): Promise<{ dir: string; manifest: SnapshotManifest }> {
    const record = await this.get(tag);
    if (!record.manifest) {
      throw new CorruptError(
        `snapshot ${JSON.stringify(tag)} is damaged: ${record.problem ?? 'unreadable'}`,
        record.dir,
        {
          hint: `remove it with \`forkd rmi ${tag}\``,
        },
      );
    }
    if (record.manifest.status !== 'ready') {
      throw new ConflictError(`snapshot ${JSON.stringify(tag)} is ${record.manifest.status}, not ready`, {
        hint:
          record.manifest.status === 'writing'
            ? 'wait for it to finish'
            : `remove it with \`forkd rmi ${tag}\``,
      });
    }
    return { dir: record.dir, manifest: record.manifest };
  }

  /** Throws AlreadyExistsError if `tag` names a snapshot (checked before any work). */
  async assertTagFree(tag: string): Promise<void> {
    if (await this.exists(tag)) {
      throw new AlreadyExistsError(
        `snapshot ${JSON.stringify(tag)} already exists`,
        { kind: 'snapshot', name: tag },
        { hint: `pick another tag or remove it with \`forkd rmi ${tag}\`` },
      );
    }
  }

  /** Start writing a new snapshot: takes the tag lock and creates its dir. */
  async begin(tag: string, opts: { replace?: boolean } = {}): Promise<SnapshotWriter> {
    assertValidTag(tag);
    await mkdir(this.dataDir.snapshotsDir, { recursive: true });
    const lock = await lockFile(this.lockPath(tag), `snapshot ${JSON.stringify(tag)}`);
    try {
      const dir = this.dataDir.snapshotDir(tag);
      if (opts.replace) await rm(dir, { recursive: true, force: true });
      else await this.assertTagFree(tag);
      await mkdir(dir);
      return new SnapshotWriter(this, tag, dir, lock);
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /**
   * A new snapshot with the same contents under another tag. Snapshot files
   * are never written after commit, so they are hard-linked, not copied.
   * (With diff chains this is where layers get flattened.)
   */
  async clone(from: string, to: string, changes: Partial<SnapshotManifest> = {}): Promise<SnapshotManifest> {
    const { dir, manifest } = await this.getReady(from);
    const writer = await this.begin(to);
    try {
      // A copy without a parent needs no diff files: its flat files are all of it.
      const dropped = changes.diff === undefined && 'diff' in changes ? DIFF_FILES : [];
      for (const name of await readdir(dir)) {
        if (name === MANIFEST_FILE || name.endsWith('.tmp') || dropped.includes(name)) continue;
        await linkOrCopy(join(dir, name), writer.path(name));
      }
      return await writer.commit({ ...manifest, ...changes, tag: to, createdAt: new Date().toISOString() });
    } catch (err) {
      await writer.abort();
      throw err;
    }
  }

  /** A fresh staging dir on the snapshots' filesystem, so install is a rename. */
  async beginStaging(): Promise<StagedSnapshot> {
    await mkdir(this.dataDir.snapshotsDir, { recursive: true });
    const dir = join(
      this.dataDir.snapshotsDir,
      `${STAGING_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}`,
    );
    await mkdir(dir);
    return new StagedSnapshot(dir, this);
  }

  /** Staging dirs whose owning process is gone (a killed unpack). */
  async abandonedStaging(): Promise<string[]> {
    const names = await readdir(this.dataDir.snapshotsDir).catch(() => [] as string[]);
    return names
      .filter((name) => name.startsWith(STAGING_PREFIX))
      .filter((name) => {
        const pid = Number.parseInt(name.slice(STAGING_PREFIX.length), 10);
        return !(Number.isInteger(pid) && pid > 0 && isProcessAlive(pid));
      })
      .map((name) => join(this.dataDir.snapshotsDir, name));
  }

  /** With `waitForLockMs`, a tag that is briefly locked by other work is waited for instead of refused. */
  /**
   * Remove a snapshot. `unlessDependents` refuses one that others are diffs
   * of, checked under its lock: a link made ready meanwhile holds that lock
   * (parentHeld), so a chain is never left without its parent.
   */
  async remove(
    tag: string,
    opts: { waitForLockMs?: number; unlessDependents?: boolean } = {},
  ): Promise<void> {
    await this.get(tag);
    const what = `snapshot ${JSON.stringify(tag)}`;
    const lock = opts.waitForLockMs
      ? await lockFileWaiting(this.lockPath(tag), what, opts.waitForLockMs)
      : await lockFile(this.lockPath(tag), what);
    try {
      if (opts.unlessDependents) await assertNoDependents(this, tag);
      await rm(this.dataDir.snapshotDir(tag), { recursive: true, force: true });
    } finally {
      await lock.release();
    }
  }

  /**
   * Runs `work` (the step that makes a link ready) holding its parent's
   * lock, once the parent is checked to be here, ready, and the snapshot the
   * link names by content hash. Without a parent, just runs it.
   */
  async parentHeld<T>(parent: SnapshotManifest['parent'], work: () => Promise<T>): Promise<T> {
    if (!parent) return work();
    const lock = await lockFileWaiting(
      this.lockPath(parent.tag),
      `snapshot ${JSON.stringify(parent.tag)}`,
      10_000,
    );
    try {
      const held = await this.getReady(parent.tag).catch(() => null);
      if (held?.manifest.contentHash !== parent.contentHash) {
        throw new ConflictError(
          `snapshot ${parent.tag}, the parent of this diff link, was removed or replaced while the link was being written`,
          { hint: `make the link again over the ${parent.tag} you have now` },
        );
      }
      return await work();
    } finally {
      await lock.release();
    }
  }

  /** Snapshots left "writing" by a process that died, or without a manifest. */
  async abandoned(): Promise<SnapshotRecord[]> {
    const out: SnapshotRecord[] = [];
    for (const record of await this.list()) {
      if (record.manifest && record.manifest.status === 'ready') continue;
      try {
        const lock = await lockFile(this.lockPath(record.tag), 'probe');
        await lock.release();
        out.push(record); // nobody holds it: nobody is writing it
      } catch {
        // someone is writing it right now
      }
    }
    return out;
  }
}
