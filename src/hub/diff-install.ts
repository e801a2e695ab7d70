// Installing a diff pack over its parent. A diff pack holds only a link's
// diff files, so the parent it was made from must be here already: found by
// tag and checked by content hash (never by tag alone), with every ancestor
// the pack names matching the local chain. Before a byte is written the
// parent is resolved; once the diff files are written and verified, the
// link's flat files are rebuilt from the parent's in the staging dir (RAM by
// applying memory.diff, the disk layer by flattening disk.diff.qcow2 onto the
// base image), so the installed link forks exactly like one made here.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ConflictError, CorruptError, NotFoundError } from '../errors.js';
import { chainInfo, diffableAgainst } from '../snapshot/chain.js';
import { diffContentHash, snapshotContentHash } from '../snapshot/content-hash.js';
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import { applyMemoryDiff, readMemoryDiffHeader } from '../snapshot/memory-diff.js';
import type { SnapshotStore, StagedSnapshot } from '../snapshot/store.js';
import { linkOrCopy } from '../util/files.js';
import { inspectDiskImage, type DiskImageInfo } from '../vmm/disk.js';
import { flattenDiskLayers } from '../vmm/disk-layers.js';
import type { PackManifest } from './pack-manifest.js';

/** The local snapshot a diff pack is installed over. */
export interface DiffParent {
  tag: string;
  dir: string;
  manifest: SnapshotManifest;
  contentHash: string;
}

type Reject = (message: string, entry?: string | null) => Error;

/**
 * The pack's parent, as installed here: present, ready, with the content
 * hash the pack names, and with the ancestors the pack names (root first).
 * Called before any file of the pack is written.
 */
export async function findDiffParent(
  store: SnapshotStore,
  pack: PackManifest,
  installTag: string,
  source: string,
  reject: Reject,
): Promise<DiffParent> {
  const link = pack.chain[pack.chain.length - 1]!;
  const wanted = `${link.tag} (content hash ${link.content_hash})`;
  if (pack.chain.some((a) => a.tag === installTag)) {
    throw new ConflictError(
      `${source} is a diff of ${link.tag}: it cannot be installed as its own ancestor ${installTag}`,
      {
        hint: 'unpack it under another tag (--tag)',
      },
    );
  }
  if (!(await store.exists(link.tag))) {
    throw new NotFoundError(
      `${source} is a diff of snapshot ${wanted}, which is not installed here`,
      { kind: 'snapshot', name: link.tag },
      { hint: `pull or unpack ${link.tag} (that content hash) first, then this pack` },
    );
  }
  const { dir, manifest } = await store.getReady(link.tag).catch((err: unknown) => {
    if (!(err instanceof ConflictError)) throw err; // damaged: CorruptError naming it
    throw new ConflictError(`${source} is a diff of ${link.tag}, but ${err.message}`, { hint: err.hint });
  });
  const contentHash = await snapshotContentHash(store, link.tag);
  if (contentHash !== link.content_hash) {
    throw new ConflictError(
      `${source} is a diff of snapshot ${wanted}, but the local ${link.tag} has content hash ${contentHash}`,
      {
        hint: `the local ${link.tag} is another snapshot: install the one the pack was made from (under that tag)`,
      },
    );
  }
  const local = await chainInfo(store, link.tag);
  if (local.problem) {
    throw new ConflictError(
      `${source} is a diff of ${link.tag}, whose own chain is broken here: ${local.problem}`,
      {
        hint: `pull or unpack the ancestors of ${link.tag} again`,
      },
    );
  }
  const localChain = [...local.ancestors, link.tag];
  const packChain = pack.chain.map((a) => a.tag);
  if (localChain.join('\0') !== packChain.join('\0')) {
    throw reject(
      `its chain ${packChain.join(' > ')} is not the local chain of ${link.tag}: ${localChain.join(' > ')}`,
    );
  }
  for (const ancestor of pack.chain.slice(0, -1)) {
    const hash = await snapshotContentHash(store, ancestor.tag);
    if (hash !== ancestor.content_hash) {
      throw reject(
        `it names ancestor ${ancestor.tag} with content hash ${ancestor.content_hash}; the local one has ${hash}`,
      );
    }
  }
  return { tag: link.tag, dir, manifest, contentHash };
}

/**
 * A link's disk diff may only be backed by its parent's disk layer, by the
 * relative path a link made here has (snapshots are sibling dirs, and so is
 * the staging dir), as qcow2, with no external data file: any other path is
 * a host file QEMU would open for the guest.
 */
export function diffLayerProblem(layer: DiskImageInfo, parentTag: string): string | null {
  const expected = `../${parentTag}/${SNAPSHOT_FILES.disk}`;
  if (layer.format !== 'qcow2') return `is ${layer.format}, not qcow2`;
  if (layer.dataFile !== null) return `has an external data file ${JSON.stringify(layer.dataFile)}`;
  if (layer.backingFile !== expected) {
    return `is backed by ${JSON.stringify(layer.backingFile)}; only ${expected} (the parent's layer) is allowed`;
  }
  if (layer.backingFormat !== 'qcow2') {
    return `names its backing file's format ${String(layer.backingFormat)}, not qcow2`;
  }
  return null;
}

/**
 * After the diff files were written and their sha256 verified: check them
 * against the parent and rebuild the flat files in the staging dir. Returns
 * the files written (to be synced before install).
 */
export async function rebuildFromParent(
  store: SnapshotStore,
  staged: StagedSnapshot,
  snapshot: SnapshotManifest,
  pack: PackManifest,
  parent: DiffParent,
  reject: Reject,
  signal: AbortSignal | undefined,
): Promise<string[]> {
  const p = parent.manifest;
  if (!diffableAgainst(p, snapshot)) {
    throw reject(
      `its snapshot is not a diff of ${parent.tag} (kernel, initrd, image, machine or disk differ)`,
    );
  }
  const vmstate = pack.files.find((f) => f.path === SNAPSHOT_FILES.vmstate);
  if (vmstate?.sha256 !== snapshot.vmstate.sha256) {
    throw reject(
      `its ${SNAPSHOT_FILES.vmstate} is not the one its snapshot.json names`,
      SNAPSHOT_FILES.vmstate,
    );
  }

  // Its identity: the parent's hash and its own diff files, as made where it came from.
  if ((await diffContentHash(staged.dir, snapshot)) !== snapshot.contentHash) {
    throw reject(
      `its content hash ${String(snapshot.contentHash)} is not the hash of its parent and diff files`,
    );
  }

  // RAM: the diff must be of exactly the parent's RAM, which is the declared memory.
  const diffPath = staged.path(SNAPSHOT_FILES.memoryDiff);
  const declared = pack.machine.memory_mib * 2 ** 20;
  const parentMemory = join(parent.dir, SNAPSHOT_FILES.memory);
  const header = await readMemoryDiffHeader(diffPath).catch((err: unknown) => {
    throw reject(err instanceof CorruptError ? err.message : String(err), SNAPSHOT_FILES.memoryDiff);
  });
  const parentBytes = (await stat(parentMemory)).size;
  if (header.logicalBytes !== declared || header.logicalBytes !== parentBytes) {
    throw reject(
      `its ${SNAPSHOT_FILES.memoryDiff} is of ${header.logicalBytes} bytes of RAM; the machine declares ${declared} and ${parent.tag}'s RAM is ${parentBytes}`,
      SNAPSHOT_FILES.memoryDiff,
    );
  }
  if (header.dataPages + header.zeroPages !== snapshot.diff?.memory.pages) {
    throw reject(
      `its ${SNAPSHOT_FILES.memoryDiff} does not hold the pages its snapshot.json counts`,
      SNAPSHOT_FILES.memoryDiff,
    );
  }
  try {
    await applyMemoryDiff(parentMemory, diffPath, staged.path(SNAPSHOT_FILES.memory), {
      maxLogicalBytes: declared,
      signal,
    });
  } catch (err) {
    if (err instanceof CorruptError) throw reject(err.message, SNAPSHOT_FILES.memoryDiff);
    throw err;
  }
  const written: string[] = [SNAPSHOT_FILES.memory];

  // Files a link shares with its parent are the parent's (snapshot files are never written after commit).
  await linkOrCopy(join(parent.dir, SNAPSHOT_FILES.kernel), staged.path(SNAPSHOT_FILES.kernel));
  await linkOrCopy(join(parent.dir, SNAPSHOT_FILES.initrd), staged.path(SNAPSHOT_FILES.initrd));
  if (p.disk && snapshot.disk) {
    const layer = await inspectDiskImage(staged.path(SNAPSHOT_FILES.diskDiff), 'qcow2').catch(() => {
      throw reject(`its ${SNAPSHOT_FILES.diskDiff} is not a readable qcow2 image`, SNAPSHOT_FILES.diskDiff);
    });
    const problem = diffLayerProblem(layer, parent.tag);
    if (problem) throw reject(`its ${SNAPSHOT_FILES.diskDiff} ${problem}`, SNAPSHOT_FILES.diskDiff);
    await linkOrCopy(join(parent.dir, p.disk.base), staged.path(SNAPSHOT_FILES.rootfs));
    await flattenDiskLayers(
      staged.path(SNAPSHOT_FILES.diskDiff),
      staged.path(SNAPSHOT_FILES.disk),
      // The base as the diff's chain names it (through the parent's layer): QEMU skips what it need not compare.
      { name: SNAPSHOT_FILES.rootfs, cwd: staged.dir, inChainAs: join(parent.dir, p.disk.base) },
      { signal },
    );
    written.push(SNAPSHOT_FILES.disk);
  }

  // The parent must still be the one the pack was checked against.
  if ((await snapshotContentHash(store, parent.tag)) !== parent.contentHash) {
    throw new ConflictError(`snapshot ${parent.tag} was replaced while a diff of it was being unpacked`, {
      hint: 'unpack again',
    });
  }
  return written;
}
