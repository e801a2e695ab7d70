// The snapshot tree built from manifests (pure logic): parents found by
// branchedFrom, sandboxes under the snapshot they run from, a removed parent
// noted, depth counted, and the flat wire form rebuilding the same tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { SnapshotManifest } from '../../src/snapshot/manifest.js';
import {
  buildSnapshotTree,
  flattenTree,
  renderSnapshotTree,
  treeFromFlat,
  type TreeInput,
} from '../../src/snapshot/tree.js';

function snap(tag: string, branchedFrom?: string, sandboxId?: string): TreeInput {
  const manifest = {
    status: 'ready',
    ...(branchedFrom ? { branchedFrom } : {}),
    ...(sandboxId ? { branch: { sandboxId, depth: 1, pauseMs: 1, migrateMs: 1, finishMs: 1 } } : {}),
  } as unknown as SnapshotManifest;
  return { tag, manifest, bytes: 3 * 2 ** 20 };
}

test('snapshots sit under the one they were branched from, sandboxes under theirs, depth counted', () => {
  const roots = buildSnapshotTree(
    [
      snap('base'),
      snap('b1', 'base', 'sb-1'),
      snap('b2', 'b1', 'sb-2'),
      snap('b3', 'b2', 'sb-3'),
      snap('other'),
    ],
    [
      { id: 'sb-9', snapshotTag: 'b3' },
      { id: 'sb-1', snapshotTag: 'base' },
    ],
  );
  assert.deepEqual(
    roots.map((r) => r.tag),
    ['base', 'other'],
  );
  const b3 = roots[0]!.children[0]!.children[0]!.children[0]!;
  assert.equal(b3.tag, 'b3');
  assert.equal(b3.depth, 3);
  assert.deepEqual(b3.sandboxes, ['sb-9']);
  assert.equal(b3.branchedFromSandbox, 'sb-3');
  assert.deepEqual(treeFromFlat(flattenTree(roots)), roots);
  assert.deepEqual(renderSnapshotTree(roots), [
    'base  (3.0 MiB)',
    '├─ ● sb-1 (running)',
    '└─ b1  (3.0 MiB, branched from sb-1)',
    '   └─ b2  (3.0 MiB, branched from sb-2)',
    '      └─ b3  (3.0 MiB, branched from sb-3)',
    '         └─ ● sb-9 (running)',
    'other  (3.0 MiB)',
  ]);
});

test('a snapshot whose parent is gone is a root that says so; an unreadable one is failed', () => {
  const roots = buildSnapshotTree(
    [snap('child', 'removed-fork'), { tag: 'broken', manifest: null, bytes: 0 }],
    [{ id: 'sb-x', snapshotTag: 'nowhere' }],
  );
  assert.deepEqual(
    roots.map((r) => [r.tag, r.parentMissing, r.status]),
    [
      ['broken', null, 'failed'],
      ['child', 'removed-fork', 'ready'],
    ],
  );
  assert.match(renderSnapshotTree(roots).join('\n'), /child {2}\(3\.0 MiB, parent removed-fork removed\)/);
});
