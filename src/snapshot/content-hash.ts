// A snapshot's content hash: what a chain link names its parent by, so that a
// parent replaced under the same tag (or a different snapshot of that name on
// another host) is never taken for it. A self-contained snapshot's hash
// covers its base image, kernel, initrd, device state, RAM and disk layer;
// hashing RAM costs about a second per 512 MiB, so it is computed once, the
// first time a diff is made of the snapshot (or a diff pack is installed over
// it), and kept in its manifest. A diff link's covers its parent's hash and
// its own diff files, which are small. It lives here, not in the engine,
// because unpacking a diff pack (src/hub) matches parents by it too.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { updateManifest } from './chain.js';
import { SNAPSHOT_FILES, type SnapshotManifest } from './manifest.js';
import type { SnapshotStore } from './store.js';
import { sha256File } from '../util/files.js';

function hashOf(parts: Record<string, string | null>): string {
  return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
}

/**
 * A self-contained snapshot's hash from its manifest and the sha256 of its
 * RAM file and disk layer (a pack's manifest lists those, so an unpack need
 * not read the files again).
 */
export function selfContainedContentHash(
  manifest: Pick<SnapshotManifest, 'image' | 'kernel' | 'initrd' | 'vmstate'>,
  files: { memorySha256: string; diskSha256: string | null },
): string {
  return hashOf({
    image: manifest.image.contentHash,
    kernel: manifest.kernel.sha256,
    initrd: manifest.initrd.sha256,
    vmstate: manifest.vmstate.sha256,
    memory: files.memorySha256,
    disk: files.diskSha256,
  });
}

/** The content hash of a diff link, from its parent's hash and its diff files in `dir`. */
export async function diffContentHash(
  dir: string,
  manifest: Pick<SnapshotManifest, 'vmstate' | 'parent' | 'diff'>,
): Promise<string> {
  return hashOf({
    parent: manifest.parent?.contentHash ?? null,
    vmstate: manifest.vmstate.sha256,
    memoryDiff: manifest.diff ? await sha256File(join(dir, manifest.diff.memory.file)) : null,
    diskDiff: manifest.diff?.disk ? await sha256File(join(dir, manifest.diff.disk.file)) : null,
  });
}

/** `tag`'s content hash, computed (and recorded) on first use. */
export async function snapshotContentHash(store: SnapshotStore, tag: string): Promise<string> {
  const { dir, manifest } = await store.getReady(tag);
  if (manifest.contentHash) return manifest.contentHash;
  const hash = selfContainedContentHash(manifest, {
    memorySha256: await sha256File(join(dir, SNAPSHOT_FILES.memory)),
    diskSha256: manifest.disk ? await sha256File(join(dir, manifest.disk.layer)) : null,
  });
  await updateManifest(store, tag, (m) => ({ ...m, contentHash: hash }));
  return hash;
}
