// Which ancestors a diff pack names: the link's chain in this store, root
// first, each by tag and content hash. A pack of a link whose chain is
// broken here (a parent gone or replaced) cannot be a diff pack: whoever
// unpacks it could never find the parent it was made from. A pack made
// `--with-ancestors` carries the chain's snapshots themselves.
import { ConflictError } from '../errors.js';
import { chainInfo } from '../snapshot/chain.js';
import { snapshotContentHash } from '../snapshot/content-hash.js';
import type { SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotStore } from '../snapshot/store.js';

export interface PackChainEntry {
  tag: string;
  contentHash: string;
}

/** The ancestors of link `tag`, root first; empty for a self-contained snapshot. */
export async function diffPackChain(store: SnapshotStore, tag: string): Promise<PackChainEntry[]> {
  const info = await chainInfo(store, tag);
  if (info.problem) {
    throw new ConflictError(`snapshot ${tag} cannot be packed as a diff: ${info.problem}`, {
      hint: 'pack it whole with --self-contained',
    });
  }
  const chain: PackChainEntry[] = [];
  for (const ancestor of info.ancestors) {
    chain.push({ tag: ancestor, contentHash: await snapshotContentHash(store, ancestor) });
  }
  return chain;
}

/** The ancestors themselves, for a pack that carries them: each as ready and with the hash the chain names. */
export async function chainSnapshots(
  store: SnapshotStore,
  chain: readonly PackChainEntry[],
): Promise<{ dir: string; snapshot: SnapshotManifest }[]> {
  const snapshots: { dir: string; snapshot: SnapshotManifest }[] = [];
  for (const link of chain) {
    const { dir, manifest } = await store.getReady(link.tag);
    if ((await snapshotContentHash(store, link.tag)) !== link.contentHash) {
      throw new ConflictError(`snapshot ${link.tag} was replaced while its chain was being packed`, {
        hint: 'pack again',
      });
    }
    snapshots.push({ dir, snapshot: manifest });
  }
  return snapshots;
}
