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

export interface DiffSource {
  /** The snapshot the source sandbox was forked from: the link's parent. */
  parentTag: string;
  parentDir: string;
  parent: SnapshotManifest;
  /** The sandbox's disk as frozen at the branch point (its top layer), if it has a disk. */
  frozenDisk: string | null;
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
        inChainAs: join(from.parentDir, from.parent.disk.layer),
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
