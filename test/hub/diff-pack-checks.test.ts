// The checks of a diff pack that need no VM: its manifest's shape (only diff
// files, each saying what it is a diff of; a chain without cycles; carried
// ancestors each whole, as the pack each could have been alone; a memory diff
// no bigger than the declared RAM allows), where a carried ancestor's entries
// sit, and the one backing file a link's disk diff may name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorruptError } from '../../src/errors.js';
import { diffLayerProblem } from '../../src/hub/diff-install.js';
import type { DiskImageInfo } from '../../src/vmm/disk.js';
import {
  ancestorPackManifest,
  carriesAncestors,
  chainEntryName,
  memoryDiffLimit,
  splitEntryName,
  parsePackManifest,
  PACK_DIFF_FORMAT_VERSION,
  type PackManifest,
} from '../../src/hub/pack-manifest.js';

const HASH = 'a'.repeat(64);
const MIB = 2 ** 20;

function diffPack(): PackManifest {
  const file = (path: string, size: number, diffOf?: string) => ({
    path,
    size,
    sha256: '0'.repeat(64),
    stored_bytes: size,
    ...(diffOf ? { diff_of: diffOf } : {}),
  });
  return {
    format: 'forkd-pack',
    format_version: PACK_DIFF_FORMAT_VERSION,
    tag: 'link',
    description: 'a link',
    created_at: '2026-12-01T00:00:00.000Z',
    forkd_version: '0.1.0',
    machine: {
      qemu_version: '7.2.22',
      machine_type: 'microvm',
      cpu_model: 'max',
      accel: 'tcg',
      memory_mib: 128,
      vcpus: 1,
    },
    base_image: { recipe: 'tiny', content_hash: 'x', kernel: '6.1' },
    files: [
      file('disk.diff.qcow2', 1 << 20, 'disk.qcow2'),
      file('memory.diff', 5 << 20, 'memory'),
      file('vmstate', 300_000),
      file('snapshot.json', 2000),
    ],
    chain: [{ tag: 'root', content_hash: HASH, files: [] }],
    compression: { codec: 'zstd', window_log: 29 },
  };
}

const parse = (m: PackManifest) => parsePackManifest(JSON.parse(JSON.stringify(m)), 'x.forkd.tar.zst');

void test('a diff pack manifest with its diff files and a chain of ancestors parses', () => {
  const m = parse(diffPack());
  assert.deepEqual(
    m.chain.map((l) => l.tag),
    ['root'],
  );
  assert.equal(m.files.find((f) => f.path === 'memory.diff')?.diff_of, 'memory');
});

void test('a diff pack holding a flat file, or a diff file that says it is a diff of something else, is corrupt', () => {
  for (const flat of ['memory', 'vmlinux', 'initrd.img', 'rootfs.ext4', 'disk.qcow2']) {
    const m = diffPack();
    m.files.push({ path: flat, size: 1, sha256: '0'.repeat(64), stored_bytes: 1 });
    assert.throws(() => parse(m), CorruptError, flat);
    assert.throws(
      () => parse(m),
      new RegExp(`lists ${flat.replace('.', '\\.')}, which a diff pack does not hold`),
    );
  }
  const wrong = diffPack();
  wrong.files[1]!.diff_of = 'vmstate';
  assert.throws(() => parse(wrong), /memory\.diff is a diff of vmstate; it is a diff of memory/);
  const unmarked = diffPack();
  delete unmarked.files[1]!.diff_of;
  assert.throws(() => parse(unmarked), /memory\.diff is a diff of nothing/);
  const missing = diffPack();
  missing.files.splice(1, 1);
  assert.throws(() => parse(missing), /lacks memory\.diff/);
});

void test('a full pack may not carry diff files marked as diffs', () => {
  const m = diffPack();
  m.chain = [];
  m.format_version = 1;
  assert.throws(() => parse(m), /lists diff files but names no ancestors/);
});

void test('a chain with a tag twice, or naming the pack itself, is a cycle', () => {
  const twice = diffPack();
  twice.chain = [
    { tag: 'root', content_hash: HASH, files: [] },
    { tag: 'root', content_hash: HASH, files: [] },
  ];
  assert.throws(() => parse(twice), /chain of ancestors with a cycle/);
  const self = diffPack();
  self.chain.push({ tag: 'link', content_hash: HASH, files: [] });
  assert.throws(() => parse(self), /cycle/);
});

void test('a memory diff bigger than the declared memory allows is refused before a byte is written', () => {
  const m = diffPack();
  const limit = memoryDiffLimit(128 * MIB);
  assert.equal(limit, 64 + 128 * MIB + ((128 * MIB) / 4096) * 8);
  m.files[1]!.size = limit + 1;
  m.files[1]!.stored_bytes = limit + 1;
  assert.throws(() => parse(m), /memory\.diff is \d+ bytes; a diff of 128 MiB of RAM is at most/);
});

const line = (path: string, size: number, diffOf?: string) => ({
  path,
  size,
  sha256: '0'.repeat(64),
  stored_bytes: size,
  ...(diffOf ? { diff_of: diffOf } : {}),
});

/** A pack of link over mid over root, carrying both (root whole, mid as a diff). */
function carryingPack(): PackManifest {
  const m = diffPack();
  m.chain = [
    {
      tag: 'root',
      content_hash: HASH,
      files: [
        line('vmlinux', 5 * MIB),
        line('initrd.img', MIB),
        line('memory', 128 * MIB),
        line('vmstate', 300_000),
        line('snapshot.json', 2000),
      ],
    },
    {
      tag: 'mid',
      content_hash: 'b'.repeat(64),
      files: [line('memory.diff', MIB, 'memory'), line('vmstate', 300_000), line('snapshot.json', 2000)],
    },
  ];
  return m;
}

void test('a pack carrying its ancestors parses, and each ancestor reads as the pack it could have been', () => {
  const m = parse(carryingPack());
  assert.ok(carriesAncestors(m));
  const root = ancestorPackManifest(m, 0);
  assert.equal(root.tag, 'root');
  assert.deepEqual(root.chain, []);
  assert.equal(root.content_hash, HASH);
  const mid = ancestorPackManifest(m, 1);
  assert.deepEqual(
    mid.chain.map((l) => [l.tag, l.files.length]),
    [['root', 0]],
  );
  assert.equal(mid.files.length, 3);
  assert.ok(!carriesAncestors(diffPack()));
});

void test('a carried ancestor that is partial, or of the wrong shape, is corrupt; a chain in a format-1 pack too', () => {
  const partial = carryingPack();
  partial.chain[1]!.files = [];
  assert.throws(() => parse(partial), /carries some of its ancestors but not all/);
  const noRam = carryingPack();
  noRam.chain[0]!.files = noRam.chain[0]!.files.filter((f) => f.path !== 'memory');
  assert.throws(() => parse(noRam), /lacks memory/);
  const flatMid = carryingPack();
  flatMid.chain[1]!.files.push(line('memory', 128 * MIB));
  assert.throws(() => parse(flatMid), /is a diff pack but lists memory/);
  const old = diffPack();
  old.format_version = 1;
  assert.throws(() => parse(old), /pack format 1 but names 1 ancestors/);
});

void test("a carried ancestor's files sit under chain/<index>/; anything else is the pack's own", () => {
  assert.equal(chainEntryName(3, 'memory.diff'), 'chain/3/memory.diff');
  assert.deepEqual(splitEntryName('chain/3/memory.diff'), { link: 3, path: 'memory.diff' });
  assert.deepEqual(splitEntryName('memory'), { link: null, path: 'memory' });
  for (const odd of ['chain/03/memory', 'chain/x/memory', 'chain/1/a/b', 'chain/100/memory']) {
    assert.equal(splitEntryName(odd).link, null, odd);
  }
});

void test("a link's disk diff may be backed only by ../<parent>/disk.qcow2 as qcow2, with no data file", () => {
  const ok: DiskImageInfo = {
    format: 'qcow2',
    backingFile: '../root/disk.qcow2',
    backingFormat: 'qcow2',
    dataFile: null,
  };
  assert.equal(diffLayerProblem(ok, 'root'), null);
  const cases: [Partial<DiskImageInfo>, RegExp][] = [
    [{ backingFile: '/etc/shadow' }, /backed by "\/etc\/shadow"; only \.\.\/root\/disk\.qcow2/],
    [{ backingFile: '../other/disk.qcow2' }, /backed by "\.\.\/other\/disk\.qcow2"/],
    [{ backingFile: '../root/rootfs.ext4' }, /backed by "\.\.\/root\/rootfs\.ext4"/],
    [{ backingFile: '../root/../root/disk.qcow2' }, /backed by/],
    [{ backingFile: null }, /backed by null/],
    [{ backingFormat: 'raw' }, /backing file's format raw, not qcow2/],
    [{ dataFile: '/dev/sda' }, /external data file "\/dev\/sda"/],
    [{ format: 'raw' }, /is raw, not qcow2/],
  ];
  for (const [change, message] of cases) {
    const problem = diffLayerProblem({ ...ok, ...change }, 'root');
    assert.ok(problem, JSON.stringify(change));
    assert.match(problem, message);
  }
});
