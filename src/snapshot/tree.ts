// The snapshot tree: each snapshot under the one it was branched (or
// forked) from, with the live sandboxes running from each. Pure: built from
// manifests and a sandbox list, so the daemon, the CLI and tests share it.
import type { SnapshotManifest } from './manifest.js';

export interface TreeSnapshot {
  tag: string;
  status: string;
  /** Bytes its files take on disk (RAM file as stored, disk layer, device state). */
  bytes: number;
  /** Levels of branching below a built snapshot (0 for one booted from an image). */
  depth: number;
  /** The sandbox it was branched from, when it was. */
  branchedFromSandbox: string | null;
  /** Its parent's tag is recorded but that snapshot is gone. */
  parentMissing: string | null;
  sandboxes: string[];
  children: TreeSnapshot[];
}

export interface TreeInput {
  tag: string;
  manifest: SnapshotManifest | null;
  bytes: number;
}

/** Roots first by tag; children under their parent by tag. */
export function buildSnapshotTree(
  snapshots: readonly TreeInput[],
  sandboxes: ReadonlyArray<{ id: string; snapshotTag: string }>,
): TreeSnapshot[] {
  const nodes = new Map<string, TreeSnapshot>();
  for (const s of snapshots) {
    nodes.set(s.tag, {
      tag: s.tag,
      status: s.manifest?.status ?? 'failed',
      bytes: s.bytes,
      depth: 0,
      branchedFromSandbox: s.manifest?.branch?.sandboxId ?? null,
      parentMissing: null,
      sandboxes: [],
      children: [],
    });
  }
  for (const sb of sandboxes) nodes.get(sb.snapshotTag)?.sandboxes.push(sb.id);
  const roots: TreeSnapshot[] = [];
  for (const s of snapshots) {
    const node = nodes.get(s.tag)!;
    const parentTag = s.manifest?.branchedFrom;
    const parent = parentTag === undefined || parentTag === s.tag ? undefined : nodes.get(parentTag);
    if (parent) parent.children.push(node);
    else {
      if (parentTag !== undefined && parentTag !== s.tag) node.parentMissing = parentTag;
      roots.push(node);
    }
  }
  const order = (list: TreeSnapshot[], depth: number): void => {
    list.sort((a, b) => a.tag.localeCompare(b.tag));
    for (const n of list) {
      n.depth = depth;
      n.sandboxes.sort();
      order(n.children, depth + 1);
    }
  };
  order(roots, 0);
  return roots;
}

function size(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${Math.round(bytes / 1024)} KiB`;
}

/** The tree as indented text lines (what `forkd tree` prints). */
export function renderSnapshotTree(roots: readonly TreeSnapshot[]): string[] {
  const lines: string[] = [];
  const walk = (node: TreeSnapshot, prefix: string, last: boolean, top: boolean): void => {
    const branch = top ? '' : last ? '└─ ' : '├─ ';
    const notes = [
      size(node.bytes),
      node.status === 'ready' ? null : node.status,
      node.branchedFromSandbox ? `branched from ${node.branchedFromSandbox}` : null,
      node.parentMissing ? `parent ${node.parentMissing} removed` : null,
    ].filter((n): n is string => n !== null);
    lines.push(`${prefix}${branch}${node.tag}  (${notes.join(', ')})`);
    const inner = top ? '' : prefix + (last ? '   ' : '│  ');
    const items: Array<{ sandbox: string } | { node: TreeSnapshot }> = [
      ...node.sandboxes.map((sandbox) => ({ sandbox })),
      ...node.children.map((child) => ({ node: child })),
    ];
    items.forEach((item, i) => {
      const isLast = i === items.length - 1;
      if ('sandbox' in item) lines.push(`${inner}${isLast ? '└─ ' : '├─ '}● ${item.sandbox} (running)`);
      else walk(item.node, inner, isLast, false);
    });
  };
  roots.forEach((root) => walk(root, '', true, true));
  return lines;
}

/** One snapshot of the tree on the wire: depth-first, each after its parent. */
export interface FlatTreeNode {
  tag: string;
  parent: string | null;
  depth: number;
  status: string;
  bytes: number;
  branched_from_sandbox: string | null;
  parent_missing: string | null;
  sandboxes: string[];
}

export function flattenTree(roots: readonly TreeSnapshot[]): FlatTreeNode[] {
  const out: FlatTreeNode[] = [];
  const walk = (n: TreeSnapshot, parent: string | null): void => {
    out.push({
      tag: n.tag,
      parent,
      depth: n.depth,
      status: n.status,
      bytes: n.bytes,
      branched_from_sandbox: n.branchedFromSandbox,
      parent_missing: n.parentMissing,
      sandboxes: [...n.sandboxes],
    });
    n.children.forEach((c) => walk(c, n.tag));
  };
  roots.forEach((r) => walk(r, null));
  return out;
}

export function treeFromFlat(nodes: readonly FlatTreeNode[]): TreeSnapshot[] {
  const byTag = new Map<string, TreeSnapshot>();
  const roots: TreeSnapshot[] = [];
  for (const f of nodes) {
    const node: TreeSnapshot = {
      tag: f.tag,
      status: f.status,
      bytes: f.bytes,
      depth: f.depth,
      branchedFromSandbox: f.branched_from_sandbox,
      parentMissing: f.parent_missing,
      sandboxes: [...f.sandboxes],
      children: [],
    };
    byTag.set(f.tag, node);
    const parent = f.parent === null ? undefined : byTag.get(f.parent);
    if (parent) parent.children.push(node);
    else roots.push(node);
  }
  return roots;
}
