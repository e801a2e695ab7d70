// Which ancestors a diff pack names: the link's chain in this store, root
// first, each by tag and content hash. A pack of a link whose chain is
// broken here (a parent gone or replaced) cannot be a diff pack: whoever
// unpacks it could never find the parent it was made from.
import { ConflictError } from '../errors.js';
import { chainInfo } from '../snapshot/chain.js';
import { snapshotContentHash } from '../snapshot/content-hash.js';
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
