// Diff chains in the store: a snapshot may name a parent (manifest.parent),
// and the store answers who a snapshot's ancestors and dependents are. Links
// are by tag, checked by content hash; every snapshot also keeps flat files,
// so a chain is bookkeeping for packs and deletes, never work at fork time.
import { ConflictError, CorruptError } from '../errors.js';
import { writeManifest, type SnapshotManifest } from './manifest.js';
import { lockFileWaiting } from './lock.js';
import type { SnapshotRecord, SnapshotStore } from './store.js';

export interface ChainInfo {
  /** Root first, the direct parent last; empty for a self-contained snapshot. */
  ancestors: string[];
  /** Snapshots whose parent this one is. */
  dependents: string[];
  /** Links between this snapshot and its root: 0 for a self-contained one. */
  depth: number;
  /** Set when a link is broken: the parent is gone, or its content hash is not the one recorded. */
  problem: string | null;
}

/** Ancestors (root first) and direct dependents of `tag`, from one listing of the store. */
export async function chainInfo(store: SnapshotStore, tag: string): Promise<ChainInfo> {
  return chainInRecords(await store.list(), tag);
}

/** The same, from a listing the caller has (`forkd images` asks for every snapshot's). */
export function chainInRecords(records: readonly SnapshotRecord[], tag: string): ChainInfo {
  const byTag = new Map(records.map((r) => [r.tag, r]));
  const ancestors: string[] = [];
  let problem: string | null = null;
  const seen = new Set([tag]);
  let link = byTag.get(tag)?.manifest?.parent;
  while (link) {
    if (seen.has(link.tag)) {
      throw new CorruptError(`snapshot chain of ${tag} has a cycle through ${link.tag}`, tag, {
        hint: `remove the snapshots of the cycle (forkd rmi)`,
      });
    }
    seen.add(link.tag);
    const parent: SnapshotRecord | undefined = byTag.get(link.tag);
    if (!parent?.manifest) {
      problem = `parent ${link.tag} is missing`;
      break;
    }
    if (parent.manifest.contentHash !== link.contentHash) {
      problem = `parent ${link.tag} is not the snapshot this one was made from (content hash differs)`;
      break;
    }
    ancestors.unshift(link.tag);
    link = parent.manifest.parent;
  }
  const dependents = records.filter((r) => r.manifest?.parent?.tag === tag).map((r) => r.tag);
  return { ancestors, dependents, depth: ancestors.length, problem };
}

/** Every snapshot that descends from `tag`, leaves first (the order to remove them in). */
export async function descendantsOf(store: SnapshotStore, tag: string): Promise<string[]> {
  const records = await store.list();
  const children = new Map<string, string[]>();
  for (const r of records) {
    const parent = r.manifest?.parent?.tag;
    if (parent) children.set(parent, [...(children.get(parent) ?? []), r.tag]);
  }
  const out: string[] = [];
  const visit = (t: string, path: Set<string>) => {
    for (const child of children.get(t) ?? []) {
      if (path.has(child)) continue; // a cycle: chainInfo reports it
      visit(child, new Set([...path, child]));
      out.push(child);
    }
  };
  visit(tag, new Set([tag]));
  return [...new Set(out)];
}

/** Refuse to remove a snapshot others are diffs of, naming them. */
export async function assertNoDependents(store: SnapshotStore, tag: string): Promise<void> {
  const { dependents } = await chainInfo(store, tag);
  if (dependents.length === 0) return;
  throw new ConflictError(`snapshot ${tag} has dependents: ${dependents.join(', ')}`, {
    hint: 'remove them first, delete with cascade=true (forkd rmi --cascade), or compact them into self-contained copies',
  });
}

/**
 * Rewrite a ready snapshot's manifest (fields that are learnt later, such as
 * its content hash), under its tag lock so that it never races a remove.
 */
export async function updateManifest(
  store: SnapshotStore,
  tag: string,
  change: (manifest: SnapshotManifest) => SnapshotManifest,
): Promise<SnapshotManifest> {
  const lock = await lockFileWaiting(store.lockPath(tag), `snapshot ${JSON.stringify(tag)}`, 10_000);
  try {
    const { dir, manifest } = await store.getReady(tag);
    const next = change(manifest);
    await writeManifest(dir, next);
    return next;
  } finally {
    await lock.release();
  }
}

/**
 * Whether `child` can be a diff of `parent`: the same kernel, initrd, image
 * and machine, so that the parent's RAM and disk are what the diff is read
 * against and applied to.
 */
export function diffableAgainst(parent: SnapshotManifest, child: SnapshotManifest): boolean {
  return (
    parent.kernel.sha256 === child.kernel.sha256 &&
    parent.initrd.sha256 === child.initrd.sha256 &&
    parent.image.contentHash === child.image.contentHash &&
    parent.qemu.version === child.qemu.version &&
    parent.machine.machineType === child.machine.machineType &&
    parent.machine.memoryMib === child.machine.memoryMib &&
    (parent.disk === null) === (child.disk === null)
  );
}
