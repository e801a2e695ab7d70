// Making a snapshot a diff link of the snapshot its source ran: beside its
// flat files (which children restore from), it keeps the RAM pages and disk
// clusters that differ from the parent's, and names the parent by tag and
// content hash. Those diff files are what a pack of a link carries.
import { join } from 'node:path';
import { SNAPSHOT_FILES, type SnapshotDiff, type SnapshotManifest } from '../snapshot/manifest.js';
import { computeMemoryDiff } from '../snapshot/memory-diff.js';
import type { SnapshotStore, SnapshotWriter } from '../snapshot/store.js';
import type { CallOptions } from '../util/abort.js';
import { fileSizes } from '../util/files.js';
import { flattenDiskLayers } from '../vmm/disk-layers.js';
import { snapshotContentHash } from '../snapshot/content-hash.js';
import { InvalidArgumentError } from '../errors.js';
import { diffableAgainst } from '../snapshot/chain.js';

export interface DiffSource {
  /** The link's parent: the snapshot the source sandbox was forked from, or another of its machine. */
  parentTag: string;
  parentDir: string;
  parent: SnapshotManifest;
  /** Whether the parent is the snapshot the sandbox was forked from (its disk layer is in the sandbox's chain). */
  forkedFrom: boolean;
  /** The sandbox's disk as frozen at the branch point (its top layer), if it has a disk. */
  frozenDisk: string | null;
}

/**
 * The parent a branch of a sandbox of `sourceTag` writes its diff against:
 * that snapshot, or `wanted`, which must be ready and of the same kernel,
 * initrd, image and machine (its RAM and disk are what the diff is read
 * against). Checked before anything is copied.
 */
export async function diffParentOf(
  store: SnapshotStore,
  sourceTag: string,
  sourceDir: string,
  source: SnapshotManifest,
  wanted: string | undefined,
): Promise<Omit<DiffSource, 'frozenDisk'>> {
  if (wanted === undefined || wanted === sourceTag) {
    return { parentTag: sourceTag, parentDir: sourceDir, parent: source, forkedFrom: true };
  }
  const { dir, manifest } = await store.getReady(wanted);
  if (!diffableAgainst(manifest, source)) {
    throw new InvalidArgumentError(
      `cannot diff against ${wanted}: its kernel, image or machine is not that of ${sourceTag}, which the sandbox runs`,
      'diff_parent',
      { hint: `diff against ${sourceTag} or a snapshot made from it` },
    );
  }
  return { parentTag: wanted, parentDir: dir, parent: manifest, forkedFrom: false };
}

export async function writeDiffFiles(
  store: SnapshotStore,
  writer: SnapshotWriter,
  from: DiffSource,
  opts: CallOptions = {},
): Promise<Required<Pick<SnapshotManifest, 'parent' | 'diff'>>> {
  const started = Date.now();
  const contentHash = await snapshotContentHash(store, from.parentTag);
  const memory = await computeMemoryDiff(
    join(from.parentDir, SNAPSHOT_FILES.memory),
    writer.path(SNAPSHOT_FILES.memory),
    writer.path(SNAPSHOT_FILES.memoryDiff),
    { signal: opts.signal },
  );
  let disk: SnapshotDiff['disk'] = null;
  if (from.parent.disk && from.frozenDisk) {
    // Backed by the parent's layer, by a path relative to this snapshot's dir (snapshots are siblings).
    await flattenDiskLayers(
      from.frozenDisk,
      writer.path(SNAPSHOT_FILES.diskDiff),
      {
        name: `../${from.parentTag}/${from.parent.disk.layer}`,
        format: 'qcow2',
        cwd: writer.dir,
        // Only a layer of the sandbox's own chain spares the rebase comparing the whole disk.
        ...(from.forkedFrom ? { inChainAs: join(from.parentDir, from.parent.disk.layer) } : {}),
      },
      opts,
    );
    disk = { file: SNAPSHOT_FILES.diskDiff, ...(await fileSizes(writer.path(SNAPSHOT_FILES.diskDiff))) };
  }
  const memoryFile = await fileSizes(writer.path(SNAPSHOT_FILES.memoryDiff));
  return {
    parent: { tag: from.parentTag, contentHash },
    diff: {
      memory: {
        file: SNAPSHOT_FILES.memoryDiff,
        pages: memory.pages,
        // The RAM that changed, and what storing it costs.
        logicalBytes: memory.pages * memory.pageSize,
        physicalBytes: memoryFile.physicalBytes,
      },
      disk,
      ms: Date.now() - started,
    },
  };
}
