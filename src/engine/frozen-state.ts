// The last step of every snapshot write (a booted parent, a live branch): the
// RAM file loses its zero pages and the manifest gets its memory and device
// state entries.
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotWriter } from '../snapshot/store.js';
import { fileSizes, sha256File } from '../util/files.js';
import { run } from '../util/run.js';

export async function finishFrozenState(
  writer: SnapshotWriter,
  opts: { signal?: AbortSignal | undefined } = {},
): Promise<Pick<SnapshotManifest, 'memory' | 'vmstate'>> {
  // The guest zeroes freed pages (init_on_free=1), so its RAM file is mostly
  // zeros: punch them out. Children read holes as zeros, packs shrink.
  await run(['fallocate', '--dig-holes', writer.path(SNAPSHOT_FILES.memory)], opts);
  const vmstatePath = writer.path(SNAPSHOT_FILES.vmstate);
  return {
    memory: { file: SNAPSHOT_FILES.memory, ...(await fileSizes(writer.path(SNAPSHOT_FILES.memory))) },
    vmstate: {
      file: SNAPSHOT_FILES.vmstate,
      bytes: (await fileSizes(vmstatePath)).logicalBytes,
      sha256: await sha256File(vmstatePath),
    },
  };
}
