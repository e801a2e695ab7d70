// Pins what `unpackPack` refuses. Every pack here is crafted in the test
// (tar-stream + the zstd CLI) from one small valid pack with one thing
// changed: path escapes, links and device entries, newer or foreign formats,
// unsafe tags, size and sha256 lies, truncation, decompression bombs, bad
// sparse maps, a disk layer backed by a host path, an existing tag. Each must
// be rejected with its error class and a message naming the problem, leaving
// no staging dir, no snapshot dir, and nothing at the paths it aimed at. The
// unchanged pack (and a disk layer backed by its own rootfs.ext4) is the
// positive control: it installs with every file's sha256 intact.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import {
  AlreadyExistsError,
  CorruptError,
  ForkdError,
  IncompatibleError,
  InvalidArgumentError,
} from '../../src/errors.js';
import {
  PACK_FORMAT,
  PACK_FULL_FORMAT_VERSION,
  PACK_MANIFEST_ENTRY,
  type PackFile,
  type PackManifest,
} from '../../src/hub/pack-manifest.js';
import type { Extent } from '../../src/hub/sparse.js';
import { denseHeader, sparseHeader, type PaxHeaders } from '../../src/hub/tar-entries.js';
import { PackRejectedError, unpackPack, type UnpackOptions } from '../../src/hub/unpack.js';
import { DataDir } from '../../src/snapshot/data-dir.js';
import { MANIFEST_FILE, SNAPSHOT_FILES } from '../../src/snapshot/manifest.js';
import { STAGING_PREFIX, SnapshotStore } from '../../src/snapshot/store.js';

const QEMU = '7.2.22';
const HOST = { qemuVersion: QEMU, kvmUsable: false };
const MIB = 1024 * 1024;
const MEMORY_MIB = 16;
const MTIME = new Date('2025-01-01T00:00:00Z');
const SOURCE = 'crafted.forkd.tar.zst';

type ErrorClass = abstract new (...args: never[]) => ForkdError;

// ---------------------------------------------------------------- crafting

const MANIFEST_BODY = Symbol('the pack manifest, serialized when the pack is built');

interface Entry {
  header: PaxHeaders;
  /** Absent for entries without data (links, devices, dirs). */
  body?: Buffer | typeof MANIFEST_BODY;
}

/** A pack before it is built: mutate the manifest or the entries, then build(). */
interface Craft {
  manifest: PackManifest;
  entries: Entry[];
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function zerosSha256(size: number): string {
  return sha256(Buffer.alloc(size));
}

/** Deterministic, not all-zero, not very compressible filler. */
function filler(label: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(label).digest();
  for (let at = 0; at < size; at += block.length) {
    block.copy(out, at);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

function entryName(entry: Entry): string {
  const pax = entry.header.pax;
  return pax?.['GNU.sparse.name'] ?? entry.header.name;
}

function findEntry(craft: Craft, name: string): Entry {
  const entry = craft.entries.find((e) => entryName(e) === name);
  assert.ok(entry, `no entry ${name}`);
  return entry;
}

function findLine(craft: Craft, name: string): PackFile {
  const line = craft.manifest.files.find((f) => f.path === name);
  assert.ok(line, `no manifest line ${name}`);
  return line;
}

/** Set a file's entry (dense) and its manifest line together, as a consistent pack would. */
function putFile(craft: Craft, name: string, body: Buffer): void {
  const entry: Entry = { header: denseHeader({ name, size: body.length, mtime: MTIME }), body };
  const line: PackFile = { path: name, size: body.length, sha256: sha256(body), stored_bytes: body.length };
  const at = craft.entries.findIndex((e) => entryName(e) === name);
  if (at >= 0) craft.entries[at] = entry;
  else craft.entries.push(entry);
  const lineAt = craft.manifest.files.findIndex((f) => f.path === name);
  if (lineAt >= 0) craft.manifest.files[lineAt] = line;
  else craft.manifest.files.push(line);
}

/** A sparse entry from explicit regions (not checked: that is the point) and the bytes that follow the map. */
function sparseEntry(name: string, size: number, regions: Extent[], data: Buffer): Entry {
  const { header, map } = sparseHeader({ name, size, mtime: MTIME }, regions, data.length);
  return { header, body: Buffer.concat([map, data]) };
}

function snapshotJson(tag: string, files: Map<string, Buffer>, disk: boolean): Record<string, unknown> {
  const vmstate = files.get(SNAPSHOT_FILES.vmstate)!;
  return {
    formatVersion: 1,
    tag,
    status: 'ready',
    createdAt: MTIME.toISOString(),
    forkdVersion: '0.1.0',
    qemu: { version: QEMU, versionLine: `QEMU emulator version ${QEMU}` },
    machine: {
      machineType: 'microvm',
      accel: 'tcg',
      cpuModel: 'max',
      vcpus: 1,
      memoryMib: MEMORY_MIB,
      hasDisk: disk,
      hasNetwork: false,
    },
    accelReason: 'test',
    kernel: {
      version: '6.1.0-test',
      sha256: sha256(files.get(SNAPSHOT_FILES.kernel)!),
      cmdline: 'console=ttyS0',
    },
    initrd: { sha256: sha256(files.get(SNAPSHOT_FILES.initrd)!) },
    image: { recipe: 'tiny', contentHash: 'test' },
    disk: disk ? { layer: SNAPSHOT_FILES.disk, base: SNAPSHOT_FILES.rootfs } : null,
    memory: { file: SNAPSHOT_FILES.memory, logicalBytes: MEMORY_MIB * MIB, physicalBytes: 0 },
    vmstate: { file: SNAPSHOT_FILES.vmstate, bytes: vmstate.length, sha256: sha256(vmstate) },
    runtime: null,
    timings: { bootToReadyMs: 1, freezeMs: 1, totalMs: 2 },
  };
}

/** Replace snapshot.json with the valid one plus `changes` (shallow), keeping the manifest line in step. */
function putSnapshot(craft: Craft, changes: Record<string, unknown>): void {
  const current = JSON.parse(bodyOf(craft, MANIFEST_FILE).toString('utf8')) as Record<string, unknown>;
  putFile(craft, MANIFEST_FILE, Buffer.from(JSON.stringify({ ...current, ...changes }, null, 2) + '\n'));
}

function bodyOf(craft: Craft, name: string): Buffer {
  const body = findEntry(craft, name).body;
  assert.ok(Buffer.isBuffer(body));
  return body;
}

/**
 * A valid pack in forkd's own layout: the manifest first, then the kernel,
 * initrd, (rootfs and disk layer), the 16 MiB all-zero RAM file stored
 * sparse (no data blocks), vmstate and snapshot.json.
 */
function validCraft(tag = 'crafted', disk: { layer: Buffer; rootfs: Buffer } | null = null): Craft {
  const files = new Map<string, Buffer>([
    [SNAPSHOT_FILES.kernel, filler('vmlinux', 8192)],
    [SNAPSHOT_FILES.initrd, filler('initrd', 5000)],
    ...(disk
      ? ([
          [SNAPSHOT_FILES.rootfs, disk.rootfs],
          [SNAPSHOT_FILES.disk, disk.layer],
        ] as const)
      : []),
    [SNAPSHOT_FILES.vmstate, filler('vmstate', 3000)],
  ]);
  const craft: Craft = {
    manifest: {
      format: PACK_FORMAT,
      format_version: PACK_FULL_FORMAT_VERSION,
      tag,
      description: 'crafted by unpack-rejects.test',
      created_at: MTIME.toISOString(),
      forkd_version: '0.1.0',
      machine: {
        qemu_version: QEMU,
        machine_type: 'microvm',
        cpu_model: 'max',
        accel: 'tcg',
        memory_mib: MEMORY_MIB,
        vcpus: 1,
      },
      base_image: { recipe: 'tiny', content_hash: 'test', kernel: '6.1.0-test' },
      files: [],
      chain: [],
      compression: { codec: 'zstd', window_log: 29 },
    },
    entries: [
      { header: denseHeader({ name: PACK_MANIFEST_ENTRY, size: 0, mtime: MTIME }), body: MANIFEST_BODY },
    ],
  };
  for (const [name, body] of files) if (name !== SNAPSHOT_FILES.vmstate) putFile(craft, name, body);
  const memorySize = MEMORY_MIB * MIB;
  craft.entries.push(sparseEntry(SNAPSHOT_FILES.memory, memorySize, [], Buffer.alloc(0)));
  craft.manifest.files.push({
    path: SNAPSHOT_FILES.memory,
    size: memorySize,
    sha256: zerosSha256(memorySize),
    stored_bytes: 0,
  });
  putFile(craft, SNAPSHOT_FILES.vmstate, files.get(SNAPSHOT_FILES.vmstate)!);
  putFile(
    craft,
    MANIFEST_FILE,
    Buffer.from(JSON.stringify(snapshotJson(tag, files, disk !== null), null, 2) + '\n'),
  );
  return craft;
}

async function tarBytes(craft: Craft): Promise<Buffer> {
  const pack = tar.pack();
  const collected = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  })();
  for (const entry of craft.entries) {
    // tar-stream fills in (mutates) the header it is given.
    const header = {
      mtime: MTIME,
      ...entry.header,
      pax: entry.header.pax ? { ...entry.header.pax } : undefined,
    };
    if (entry.body === MANIFEST_BODY) {
      pack.entry(header, Buffer.from(JSON.stringify(craft.manifest, null, 2) + '\n'));
    } else if (entry.body) pack.entry(header, entry.body);
    else pack.entry(header);
  }
  pack.finalize();
  return collected;
}

function zstd(data: Buffer): Buffer {
  const result = spawnSync('zstd', ['-q', '-c', '--long=29'], { input: data, maxBuffer: 1 << 30 });
  assert.equal(result.status, 0, `zstd failed: ${result.stderr?.toString()}`);
  return result.stdout;
}

async function build(craft: Craft): Promise<Buffer> {
  return zstd(await tarBytes(craft));
}

/** The valid pack with one change. */
async function mutated(change: (craft: Craft) => void, tag?: string): Promise<Buffer> {
  const craft = validCraft(tag);
  change(craft);
  return build(craft);
}

// ---------------------------------------------------------------- running

interface Ctx {
  root: string;
  store: SnapshotStore;
  snapshotsDir: string;
}

async function withData(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'forkd-unpack-rejects-'));
  const store = new SnapshotStore(new DataDir(root));
  try {
    await fn({ root, store, snapshotsDir: store.dataDir.snapshotsDir });
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

function unpack(ctx: Ctx, bytes: Buffer, extra: Partial<UnpackOptions> = {}) {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += 64 * 1024) chunks.push(bytes.subarray(at, at + 64 * 1024));
  return unpackPack({
    source: Readable.from(chunks),
    sourceName: SOURCE,
    sourceBytes: bytes.length,
    store: ctx.store,
    host: HOST,
    // Crafted packs are unsigned; trust is pinned in signing.test.
    trust: { keys: new Map(), allowUnsigned: true },
    ...extra,
  });
}

/**
 * Nothing but `keep` (pre-existing snapshot dirs) in the data dir: no
 * staging dir, no snapshot dir, no held lock, nothing beside snapshots/.
 */
async function assertClean(ctx: Ctx, keep: string[] = []): Promise<void> {
  const top = await readdir(ctx.root);
  assert.ok(
    top.every((n) => n === 'snapshots'),
    `unexpected entries in the data dir: ${top.join(', ')}`,
  );
  const names = await readdir(ctx.snapshotsDir).catch(() => [] as string[]);
  assert.deepEqual(
    names.filter((n) => n.startsWith(STAGING_PREFIX)),
    [],
    'a staging dir was left behind',
  );
  assert.deepEqual(names.filter((n) => n !== '.locks').sort(), [...keep].sort());
  assert.deepEqual(await readdir(join(ctx.snapshotsDir, '.locks')).catch(() => []), []);
}

function assertAbsent(paths: string[]): void {
  for (const path of paths) assert.equal(existsSync(path), false, `${path} was created`);
}

async function assertRejected(
  ctx: Ctx,
  bytes: Buffer,
  errorClass: ErrorClass,
  message: RegExp,
  extra: Partial<UnpackOptions> = {},
  keep: string[] = [],
): Promise<ForkdError> {
  let caught: unknown = null;
  try {
    const result = await unpack(ctx, bytes, extra);
    assert.fail(`the pack was accepted and installed as ${result.tag}`);
  } catch (err) {
    caught = err;
  }
  assert.ok(
    caught instanceof errorClass,
    `expected ${errorClass.name}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`,
  );
  assert.match(caught.oneLine(), message);
  await assertClean(ctx, keep);
  return caught;
}

/** The targets an entry name would reach if anything resolved it: from the staging dir, the snapshots dir, the data dir, the cwd. */
function escapeTargets(ctx: Ctx, name: string): string[] {
  const staging = join(ctx.snapshotsDir, `${STAGING_PREFIX}x`);
  return [join(staging, name), join(ctx.snapshotsDir, name), join(ctx.root, name), resolve(name)];
}

async function fileHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = sha256(await readFile(join(dir, name)));
  return out;
}

// ---------------------------------------------------------------- fixtures

let fixtures = '';
let qemuImg = false;

before(async () => {
  fixtures = await mkdtemp(join(tmpdir(), 'forkd-unpack-fixtures-'));
  qemuImg = spawnSync('qemu-img', ['--version']).status === 0;
});

after(async () => {
  await rm(fixtures, { recursive: true, force: true });
});

/** A qcow2 layer made by qemu-img in its own dir (beside a 64 KiB rootfs.ext4), with the given create options. */
async function qcow2Layer(
  name: string,
  args: string[],
  size?: string,
): Promise<{ layer: Buffer; rootfs: Buffer }> {
  const dir = await mkdtemp(join(fixtures, `${name}-`));
  const rootfs = Buffer.alloc(64 * 1024);
  rootfs.write('not really ext4');
  await writeFile(join(dir, SNAPSHOT_FILES.rootfs), rootfs);
  const made = spawnSync(
    'qemu-img',
    ['create', '-q', '-f', 'qcow2', ...args, SNAPSHOT_FILES.disk, ...(size ? [size] : [])],
    { cwd: dir },
  );
  assert.equal(made.status, 0, `qemu-img create failed: ${made.stderr?.toString()}`);
  return { layer: await readFile(join(dir, SNAPSHOT_FILES.disk)), rootfs };
}

// ---------------------------------------------------------------- positive controls

test('control: the valid crafted pack installs with every file intact', () =>
  withData(async (ctx) => {
    const craft = validCraft('crafted');
    const result = await unpack(ctx, await build(craft));
    assert.equal(result.tag, 'crafted');
    const dir = join(ctx.snapshotsDir, 'crafted');
    assert.equal(result.dir, dir);
    const installed = await fileHashes(dir);
    const expected = Object.fromEntries(craft.manifest.files.map((f) => [f.path, f.sha256]));
    assert.deepEqual(installed, expected);
    for (const f of craft.manifest.files) assert.equal((await stat(join(dir, f.path))).size, f.size);
    // The RAM file went in as a hole, not 16 MiB of written zeros.
    assert.ok((await stat(join(dir, SNAPSHOT_FILES.memory))).blocks * 512 < MIB);
    assert.equal((await ctx.store.getReady('crafted')).manifest.tag, 'crafted');
    await assertClean(ctx, ['crafted']);
  }));

test('control: --tag installs under the new tag and rewrites snapshot.json to match', () =>
  withData(async (ctx) => {
    const result = await unpack(ctx, await build(validCraft('crafted')), { tag: 'renamed' });
    assert.equal(result.tag, 'renamed');
    assert.equal((await ctx.store.getReady('renamed')).manifest.tag, 'renamed');
    await assertClean(ctx, ['renamed']);
  }));

test('control: a disk layer backed by its own rootfs.ext4 is accepted', async (t) => {
  if (!qemuImg) return t.skip('qemu-img is not installed');
  const disk = await qcow2Layer('good', ['-b', SNAPSHOT_FILES.rootfs, '-F', 'raw']);
  await withData(async (ctx) => {
    const craft = validCraft('withdisk', disk);
    await unpack(ctx, await build(craft));
    const dir = join(ctx.snapshotsDir, 'withdisk');
    assert.deepEqual(
      await fileHashes(dir),
      Object.fromEntries(craft.manifest.files.map((f) => [f.path, f.sha256])),
    );
    await assertClean(ctx, ['withdisk']);
  });
});

// ---------------------------------------------------------------- 1-5: entries that are not plain files

test('1. an entry name with .. is rejected and nothing lands at its target', () =>
  withData(async (ctx) => {
    const name = `../../escape-${randomBytes(4).toString('hex')}`;
    const payload = Buffer.from('escaped\n');
    for (const at of [1, 0]) {
      const bytes = await mutated((c) => {
        c.entries.splice(at, 0, {
          header: denseHeader({ name, size: payload.length, mtime: MTIME }),
          body: payload,
        });
      });
      await assertRejected(
        ctx,
        bytes,
        PackRejectedError,
        /escape-[0-9a-f]{8}.*escapes the snapshot directory/,
      );
      assertAbsent(escapeTargets(ctx, name));
    }
    // A .. hidden in the middle of a path, and a Windows separator.
    for (const sneaky of [`memory/../../../escape-${randomBytes(4).toString('hex')}`, '..\\..\\escape-win']) {
      const bytes = await mutated((c) => {
        c.entries.splice(1, 0, {
          header: denseHeader({ name: sneaky, size: 1, mtime: MTIME }),
          body: Buffer.from('x'),
        });
      });
      await assertRejected(ctx, bytes, PackRejectedError, /escapes the snapshot directory/);
      assertAbsent(escapeTargets(ctx, sneaky));
    }
  }));

test('2. an absolute entry name is rejected and nothing lands there', () =>
  withData(async (ctx) => {
    const target = join(tmpdir(), `forkd-abs-${randomBytes(6).toString('hex')}`, 'abs');
    const bytes = await mutated((c) => {
      c.entries.splice(1, 0, {
        header: denseHeader({ name: target, size: 3, mtime: MTIME }),
        body: Buffer.from('abs'),
      });
    });
    await assertRejected(ctx, bytes, PackRejectedError, /forkd-abs-.*escapes the snapshot directory/);
    assertAbsent([target, join(target, '..'), ...escapeTargets(ctx, target.slice(1))]);
  }));

test('3. a symlink entry is rejected', () =>
  withData(async (ctx) => {
    // In place of a listed file (the dangerous spot) and as an extra entry.
    for (const name of [SNAPSHOT_FILES.memory, 'evil-link']) {
      const bytes = await mutated((c) => {
        const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.memory);
        c.entries.splice(at, name === SNAPSHOT_FILES.memory ? 1 : 0, {
          header: { name, type: 'symlink', linkname: '/etc/passwd', mtime: MTIME },
        });
      });
      await assertRejected(
        ctx,
        bytes,
        PackRejectedError,
        /is a symlink entry; packs hold regular files only/,
      );
    }
  }));

test('4. a hardlink entry is rejected', () =>
  withData(async (ctx) => {
    const bytes = await mutated((c) => {
      const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.kernel);
      c.entries[at] = {
        header: { name: SNAPSHOT_FILES.kernel, type: 'link', linkname: '/etc/passwd', mtime: MTIME },
      };
    });
    await assertRejected(
      ctx,
      bytes,
      PackRejectedError,
      /"vmlinux" is a link entry; packs hold regular files only/,
    );
  }));

test('5. device, fifo, directory and contiguous-file entries are rejected', () =>
  withData(async (ctx) => {
    const cases: { type: NonNullable<PaxHeaders['type']>; name: string; body?: Buffer }[] = [
      { type: 'character-device', name: SNAPSHOT_FILES.vmstate },
      { type: 'block-device', name: SNAPSHOT_FILES.vmstate },
      { type: 'fifo', name: SNAPSHOT_FILES.initrd },
      { type: 'directory', name: 'chain' },
      { type: 'contiguous-file', name: SNAPSHOT_FILES.vmstate, body: Buffer.from('data') },
    ];
    for (const { type, name, body } of cases) {
      const bytes = await mutated((c) => {
        c.entries.splice(1, 0, {
          header: { name, type, devmajor: 1, devminor: 3, mtime: MTIME },
          ...(body ? { body } : {}),
        });
      });
      await assertRejected(
        ctx,
        bytes,
        PackRejectedError,
        new RegExp(`is a ${type} entry; packs hold regular files only`),
      );
    }
  }));

// ---------------------------------------------------------------- 6-8: the manifest

test('6. a newer pack format asks for an upgrade', () =>
  withData(async (ctx) => {
    const bytes = await mutated((c) => Object.assign(c.manifest, { format_version: 99 }));
    const err = await assertRejected(ctx, bytes, IncompatibleError, /pack format 99.*upgrade forkd/);
    assert.match(err.hint ?? '', /upgrade/);
  }));

test('7. an unknown format, a malformed manifest and a non-JSON manifest are corrupt', () =>
  withData(async (ctx) => {
    await assertRejected(
      ctx,
      await mutated((c) => Object.assign(c.manifest, { format: 'something-else' })),
      CorruptError,
      /not a forkd pack \(unknown format\)/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => Object.assign(c.manifest, { files: 'all of them' })),
      CorruptError,
      /malformed manifest: \/files/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries[0] = {
          header: denseHeader({ name: PACK_MANIFEST_ENTRY, size: 0, mtime: MTIME }),
          body: Buffer.from('{not json'),
        };
      }),
      PackRejectedError,
      /the manifest is not JSON/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        const huge = Buffer.alloc((1 << 20) + 1, 0x20);
        c.entries[0] = {
          header: denseHeader({ name: PACK_MANIFEST_ENTRY, size: 0, mtime: MTIME }),
          body: huge,
        };
      }),
      PackRejectedError,
      /the manifest is too large/,
    );
    // A manifest that lacks a required file, lists one twice, or lists an unsafe path.
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.manifest.files = c.manifest.files.filter((f) => f.path !== SNAPSHOT_FILES.vmstate);
      }),
      CorruptError,
      /lacks vmstate/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => c.manifest.files.push({ ...findLine(c, SNAPSHOT_FILES.kernel) })),
      CorruptError,
      /lists vmlinux twice/,
    );
    await assertRejected(
      ctx,
      await mutated((c) =>
        c.manifest.files.push({ path: '../escape', size: 1, sha256: '0'.repeat(64), stored_bytes: 1 }),
      ),
      CorruptError,
      /malformed manifest: \/files\/\d+\/path/,
    );
    // Diff chains, another QEMU, KVM on a host without it.
    const ancestor = { tag: 'parent', content_hash: 'a'.repeat(64), files: [] };
    await assertRejected(
      ctx,
      await mutated((c) => c.manifest.chain.push(ancestor)),
      CorruptError,
      /pack format 1 but names 1 ancestors; a diff pack is format 2/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.manifest.format_version = 2;
        c.manifest.chain.push({ ...ancestor, files: [findLine(c, SNAPSHOT_FILES.vmstate)] });
      }),
      CorruptError,
      /lacks snapshot\.json/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => Object.assign(c.manifest.machine, { qemu_version: '9.9.9' })),
      IncompatibleError,
      /made with QEMU 9\.9\.9, this host has QEMU 7\.2\.22/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => Object.assign(c.manifest.machine, { accel: 'kvm' })),
      IncompatibleError,
      /made under KVM/,
    );
  }));

test('8. an unsafe tag in the manifest, in snapshot.json, or passed as --tag is rejected', () =>
  withData(async (ctx) => {
    for (const tag of ['../evil', 'a/b', '', '.locks', 'x'.repeat(65)]) {
      const bytes = await mutated((c) => Object.assign(c.manifest, { tag }));
      await assertRejected(ctx, bytes, CorruptError, /names an unsafe tag/);
      assertAbsent([join(ctx.root, 'evil'), join(ctx.snapshotsDir, 'a')]);
    }
    // snapshot.json's tag is schema-checked too (even though the pack's tag wins on install).
    await assertRejected(
      ctx,
      await mutated((c) => putSnapshot(c, { tag: '../evil' })),
      CorruptError,
      /snapshot\.json is malformed: \/tag/,
    );
    const valid = await build(validCraft());
    for (const tag of ['../evil', 'a/b', '', '.staging-1-abc', '.locks']) {
      await assertRejected(ctx, valid, InvalidArgumentError, /invalid tag/, { tag });
      assertAbsent([join(ctx.root, 'evil'), join(ctx.snapshotsDir, 'a')]);
    }
  }));

// ---------------------------------------------------------------- 9-10: lies about the content

test('9. size, stored-size and sha256 mismatches are rejected', () =>
  withData(async (ctx) => {
    await assertRejected(
      ctx,
      await mutated((c) => {
        findLine(c, SNAPSHOT_FILES.vmstate).size += 1;
      }),
      PackRejectedError,
      /vmstate is 3000 bytes in the archive but 3001 in the manifest/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        findEntry(c, SNAPSHOT_FILES.vmstate).body = filler('vmstate', 4000);
      }),
      PackRejectedError,
      /vmstate is 4000 bytes in the archive but 3000 in the manifest/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        findLine(c, SNAPSHOT_FILES.vmstate).stored_bytes = 100;
      }),
      PackRejectedError,
      /vmstate stores 3000 bytes but the manifest says 100/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        const body = Buffer.from(bodyOf(c, SNAPSHOT_FILES.vmstate));
        body.writeUInt8(body[1234]! ^ 0xff, 1234);
        findEntry(c, SNAPSHOT_FILES.vmstate).body = body;
      }),
      PackRejectedError,
      /vmstate does not match its sha256 in the manifest/,
    );
    // The sparse RAM file: its logical size, and its (all-zero) content.
    await assertRejected(
      ctx,
      await mutated((c) => {
        findLine(c, SNAPSHOT_FILES.memory).size = 32 * MIB;
      }),
      CorruptError,
      /says its RAM file is 33554432 bytes for 16 MiB/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        findLine(c, SNAPSHOT_FILES.memory).sha256 = 'f'.repeat(64);
      }),
      PackRejectedError,
      /memory does not match its sha256/,
    );
    // Consistent files, but snapshot.json disagrees with the pack manifest.
    await assertRejected(
      ctx,
      await mutated((c) =>
        putSnapshot(c, {
          machine: {
            ...(JSON.parse(bodyOf(c, MANIFEST_FILE).toString()) as { machine: object }).machine,
            memoryMib: 32,
          },
        }),
      ),
      CorruptError,
      /snapshot\.json disagrees with the pack manifest/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => putFile(c, MANIFEST_FILE, Buffer.from('{"not": "a snapshot"'))),
      PackRejectedError,
      /its snapshot\.json is not JSON/,
    );
  }));

let bigPack: Promise<Buffer> | null = null;

/** The valid pack with a 2 MiB incompressible vmstate: several zstd blocks, so a cut lands mid-stream. */
function bigValidPack(): Promise<Buffer> {
  bigPack ??= mutated((c) => putFile(c, SNAPSHOT_FILES.vmstate, filler('big vmstate', 2 * MIB)));
  return bigPack;
}

/** Packs whose zstd stream is cut or spoiled; the ones in `tarComplete` still decompress to a whole tar. */
async function spoiledPacks(): Promise<{ midStream: Buffer[]; tarComplete: Buffer[]; tiny: Buffer[] }> {
  const small = await build(validCraft());
  const big = await bigValidPack();
  return {
    midStream: [big.subarray(0, Math.floor(big.length / 2)), big.subarray(0, big.length - 64 * 1024)],
    // Only zstd's end of frame (its checksum) is missing, or junk follows the frame, or it is not zstd at all.
    tarComplete: [
      small.subarray(0, small.length - 4),
      big.subarray(0, big.length - 1),
      Buffer.concat([small, Buffer.from('junk after the frame')]),
    ],
    // The whole tar fits one zstd block: a cut leaves zstd nothing to emit.
    tiny: [small.subarray(0, Math.floor(small.length / 2)), small.subarray(0, 100), Buffer.alloc(0)],
  };
}

test('10. a truncated archive and an archive missing a listed file are rejected', () =>
  withData(async (ctx) => {
    const { midStream, tiny } = await spoiledPacks();
    for (const bytes of midStream) {
      await assertRejected(ctx, bytes, PackRejectedError, /the archive is damaged or truncated/);
    }
    // Pinned as it is: rejected, but the message says "empty" (zstd's "premature end" is not shown; see 10d).
    for (const bytes of tiny) {
      await assertRejected(
        ctx,
        bytes,
        PackRejectedError,
        /the archive is damaged or truncated|the archive is empty/,
      );
    }
    // The source itself fails (a dropped download) part-way.
    const big = await bigValidPack();
    await assertRejected(ctx, big, PackRejectedError, /damaged or truncated \(connection reset\)/, {
      source: failingSource(big, 0.3),
    });
    const small = await build(validCraft());
    for (const fraction of [0, 0.5, 1]) {
      await assertRejected(ctx, small, PackRejectedError, /./, { source: failingSource(small, fraction) });
    }
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries = c.entries.filter((e) => entryName(e) !== SNAPSHOT_FILES.initrd);
      }),
      PackRejectedError,
      /the archive is truncated: initrd\.img missing/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries = c.entries.slice(0, 1);
      }),
      PackRejectedError,
      /the archive is truncated: .*vmlinux.*missing/,
    );
  }));

/** A source that yields `fraction` of the pack and then fails, like a dropped connection. */
function failingSource(bytes: Buffer, fraction: number): Readable {
  const cut = bytes.subarray(0, Math.floor(bytes.length * fraction));
  return Readable.from(
    (async function* () {
      for (let at = 0; at < cut.length; at += 64 * 1024) {
        yield cut.subarray(at, at + 64 * 1024);
        await new Promise((resolve) => setImmediate(resolve));
      }
      throw new Error('connection reset');
    })(),
  );
}

test('10b. a complete tar in a cut or junk-trailed zstd frame, or not zstd at all, is rejected and leaves nothing', () =>
  withData(async (ctx) => {
    const { tarComplete } = await spoiledPacks();
    for (const bytes of [...tarComplete, await tarBytes(validCraft())]) {
      await assertRejected(ctx, bytes, ForkdError, /./);
    }
  }));

test('10c. a complete tar in a cut or junk-trailed zstd frame is a PackRejectedError saying damaged or truncated', () =>
  withData(async (ctx) => {
    for (const bytes of (await spoiledPacks()).tarComplete) {
      await assertRejected(ctx, bytes, PackRejectedError, /the archive is damaged or truncated/);
    }
  }));

test('10d. a stream that fails before the tar is complete is reported as that failure, not as an empty archive', () =>
  withData(async (ctx) => {
    const small = await build(validCraft());
    for (const fraction of [0, 0.5]) {
      await assertRejected(ctx, small, PackRejectedError, /connection reset/, {
        source: failingSource(small, fraction),
      });
    }
    // A cut tiny pack, and a bare tar (zstd: "unknown format"): the stream error, not "empty".
    for (const bytes of [...(await spoiledPacks()).tiny, await tarBytes(validCraft())]) {
      await assertRejected(ctx, bytes, PackRejectedError, /the archive is damaged or truncated/);
    }
  }));

// ---------------------------------------------------------------- 11: bombs

let bomb: Promise<Buffer> | null = null;

/** A pack whose vmstate is 32 MiB of zeros stored dense: a few KiB compressed. */
function bombPack(): Promise<Buffer> {
  bomb ??= mutated((c) => putFile(c, SNAPSHOT_FILES.initrd, Buffer.alloc(32 * MIB)));
  return bomb;
}

test('11. a pack that decompresses past maxDecompressedBytes or maxRatio is rejected', () =>
  withData(async (ctx) => {
    const bytes = await bombPack();
    assert.ok(bytes.length < 64 * 1024, `the bomb is ${bytes.length} bytes`);
    await assertRejected(ctx, bytes, PackRejectedError, /decompresses past the 8388608-byte limit/, {
      limits: { maxDecompressedBytes: 8 * MIB },
    });
    await assertRejected(ctx, bytes, PackRejectedError, /decompresses past the 100:1 ratio limit/, {
      limits: { maxRatio: 100, ratioGraceBytes: MIB },
    });
  }));

test('11b. a file claiming more than maxFileBytes, or a sparse map past maxSparseRegions, is rejected', () =>
  withData(async (ctx) => {
    const valid = await build(validCraft());
    await assertRejected(
      ctx,
      valid,
      PackRejectedError,
      /memory claims 16777216 bytes, past the 1048576-byte limit/,
      {
        limits: { maxFileBytes: MIB },
      },
    );
    const twoRegions = await mutated((c) => {
      const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.memory);
      c.entries[at] = sparseEntry(
        SNAPSHOT_FILES.memory,
        MEMORY_MIB * MIB,
        [
          { offset: 0, length: 4096 },
          { offset: 8192, length: 4096 },
        ],
        Buffer.alloc(8192),
      );
      findLine(c, SNAPSHOT_FILES.memory).stored_bytes = 8192;
    });
    await assertRejected(ctx, twoRegions, PackRejectedError, /sparse map has 3 regions \(limit 2\)/, {
      limits: { maxSparseRegions: 2 },
    });
  }));

// ---------------------------------------------------------------- 12: entry order and listing

test('12. manifest not first, an unlisted entry, and a duplicate entry are rejected', () =>
  withData(async (ctx) => {
    await assertRejected(
      ctx,
      await mutated((c) => {
        const [manifest, first] = c.entries;
        c.entries[0] = first!;
        c.entries[1] = manifest!;
      }),
      PackRejectedError,
      /the first entry is "vmlinux", not the manifest forkd-pack\.json/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries.splice(2, 0, {
          header: denseHeader({ name: 'extra', size: 5, mtime: MTIME }),
          body: Buffer.from('extra'),
        });
      }),
      PackRejectedError,
      /entry "extra" is not listed in the manifest/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries.push({ ...findEntry(c, SNAPSHOT_FILES.kernel) });
      }),
      PackRejectedError,
      /entry "vmlinux" appears twice/,
    );
    await assertRejected(
      ctx,
      await mutated((c) => {
        c.entries.push({ ...c.entries[0]! });
      }),
      PackRejectedError,
      /entry "forkd-pack\.json" is not listed in the manifest/,
    );
  }));

// ---------------------------------------------------------------- 13: sparse maps

test('13. sparse maps with overlapping, unordered or out-of-bounds regions, or bad names, are rejected', () =>
  withData(async (ctx) => {
    const size = MEMORY_MIB * MIB;
    const withMemory = (regions: Extent[], data: Buffer, stored = data.length) =>
      mutated((c) => {
        const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.memory);
        c.entries[at] = sparseEntry(SNAPSHOT_FILES.memory, size, regions, data);
        findLine(c, SNAPSHOT_FILES.memory).stored_bytes = stored;
      });
    await assertRejected(
      ctx,
      await withMemory(
        [
          { offset: 0, length: 4096 },
          { offset: 2048, length: 4096 },
        ],
        filler('overlap', 8192),
      ),
      PackRejectedError,
      /memory: sparse regions overlap or are out of order/,
    );
    await assertRejected(
      ctx,
      await withMemory(
        [
          { offset: 8192, length: 4096 },
          { offset: 0, length: 4096 },
        ],
        filler('unordered', 8192),
      ),
      PackRejectedError,
      /memory: sparse regions overlap or are out of order/,
    );
    await assertRejected(
      ctx,
      await withMemory([{ offset: size - 4096, length: 8192 }], filler('past', 8192)),
      PackRejectedError,
      /memory: a sparse region lies past the end of the file/,
    );
    await assertRejected(
      ctx,
      await withMemory([{ offset: size + MIB, length: 0 }], Buffer.alloc(0)),
      PackRejectedError,
      /memory: a sparse region lies past the end of the file/,
    );
    // The map's regions hold more data than the manifest says is stored.
    await assertRejected(
      ctx,
      await withMemory([{ offset: 0, length: 4096 }], filler('more', 4096), 0),
      PackRejectedError,
      /memory: its sparse map disagrees with the manifest's stored size/,
    );
    // Not decimal lines.
    await assertRejected(
      ctx,
      await mutated((c) => {
        const entry = findEntry(c, SNAPSHOT_FILES.memory);
        const body = Buffer.alloc(512);
        body.write('1\n0x10\n0\n');
        entry.body = body;
      }),
      PackRejectedError,
      /memory: the sparse map is not decimal lines/,
    );
    // An escaping or absolute GNU.sparse.name, and an unsupported sparse version.
    for (const sparseName of [
      `../../escape-${randomBytes(4).toString('hex')}`,
      `/tmp/forkd-abs-${randomBytes(4).toString('hex')}`,
    ]) {
      await assertRejected(
        ctx,
        await mutated((c) => {
          findEntry(c, SNAPSHOT_FILES.memory).header.pax!['GNU.sparse.name'] = sparseName;
        }),
        PackRejectedError,
        /escapes the snapshot directory/,
      );
      assertAbsent([sparseName, ...escapeTargets(ctx, sparseName)]);
    }
    await assertRejected(
      ctx,
      await mutated((c) => {
        findEntry(c, SNAPSHOT_FILES.memory).header.pax!['GNU.sparse.major'] = '0';
      }),
      PackRejectedError,
      /"memory" uses an unsupported sparse format/,
    );
  }));

// ---------------------------------------------------------------- 14: disk layers

test('14. a disk layer backed by a host path, or with an external data file, is rejected', async (t) => {
  if (!qemuImg) return t.skip('qemu-img is not installed');
  const passwd = await qcow2Layer('passwd', ['-b', '/etc/passwd', '-F', 'raw']);
  const dataPath = join(fixtures, `outside-${randomBytes(4).toString('hex')}.raw`);
  const dataFile = await qcow2Layer('datafile', ['-o', `data_file=${dataPath},data_file_raw=on`], '1M');
  const qcow2Backed = await qcow2Layer('qcow2', ['-b', SNAPSHOT_FILES.rootfs, '-F', 'qcow2', '-u'], '1M');
  await withData(async (ctx) => {
    await assertRejected(
      ctx,
      await build(validCraft('withdisk', passwd)),
      PackRejectedError,
      /its disk layer refers to "\/etc\/passwd"; only rootfs\.ext4 beside it is allowed/,
    );
    await assertRejected(
      ctx,
      await build(validCraft('withdisk', dataFile)),
      PackRejectedError,
      new RegExp(`its disk layer refers to "${dataPath.replace(/[.]/g, '\\.')}"`),
    );
    // Right name, wrong format: rootfs.ext4 would be opened as qcow2 (which can chain on).
    await assertRejected(
      ctx,
      await build(validCraft('withdisk', qcow2Backed)),
      PackRejectedError,
      /its disk layer refers to "rootfs\.ext4"; only rootfs\.ext4 beside it is allowed/,
    );
    // Not a qcow2 at all: rejected (any class for now, see 14b).
    await assertRejected(
      ctx,
      await build(validCraft('withdisk', garbageDisk(passwd.rootfs))),
      ForkdError,
      /qcow2/,
    );
  });
});

function garbageDisk(rootfs: Buffer): { layer: Buffer; rootfs: Buffer } {
  return { layer: Buffer.from('QFI\xfbnot really a qcow2 image'), rootfs };
}

test('14b. a disk layer that is not a qcow2 is a PackRejectedError', () =>
  withData(async (ctx) => {
    const bytes = await build(validCraft('withdisk', garbageDisk(Buffer.alloc(4096))));
    await assertRejected(ctx, bytes, PackRejectedError, /disk\.qcow2/);
  }));

// ---------------------------------------------------------------- 15: existing tags

test('15. an existing tag is not replaced without force, and is untouched', () =>
  withData(async (ctx) => {
    await unpack(ctx, await build(validCraft('taken')));
    const dir = join(ctx.snapshotsDir, 'taken');
    const before = await fileHashes(dir);
    const mtimes = await Promise.all(
      Object.keys(before).map(async (n) => (await stat(join(dir, n))).mtimeMs),
    );
    // A different pack with the same tag.
    const other = await mutated(
      (c) => putFile(c, SNAPSHOT_FILES.vmstate, filler('other vmstate', 3000)),
      'taken',
    );
    await assertRejected(ctx, other, AlreadyExistsError, /snapshot "taken" already exists.*--force/, {}, [
      'taken',
    ]);
    // --tag onto an existing tag, likewise.
    const elsewhere = await build(validCraft('elsewhere'));
    await assertRejected(ctx, elsewhere, AlreadyExistsError, /"taken" already exists/, { tag: 'taken' }, [
      'taken',
    ]);
    assert.deepEqual(await fileHashes(dir), before);
    assert.deepEqual(
      await Promise.all(Object.keys(before).map(async (n) => (await stat(join(dir, n))).mtimeMs)),
      mtimes,
    );
    // With force it is replaced.
    await unpack(ctx, other, { force: true });
    assert.notEqual((await fileHashes(dir))[SNAPSHOT_FILES.vmstate], before[SNAPSHOT_FILES.vmstate]);
    await assertClean(ctx, ['taken']);
  }));

// ---------------------------------------------------------------- 16-20: limits that match reality, tar dialects

/** A raw ustar header block (the checksum filled in), for headers tar-stream will not write. */
function rawHeader(name: string, typeflag: string, size: number): Buffer {
  const block = Buffer.alloc(512);
  block.write(name, 0, 'latin1');
  block.write('0000644\0', 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  block.write(size.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
  block.write('00000000000\0', 136, 'latin1');
  block.write(typeflag, 156, 'latin1');
  block.write('ustar\x0000', 257, 'latin1');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return block;
}

function paxData(records: Record<string, string>): Buffer {
  const lines = Object.entries(records).map(([k, v]) => {
    const body = ` ${k}=${v}\n`;
    let length = body.length + 1;
    while (String(length).length + body.length !== length) length++;
    return `${length}${body}`;
  });
  return Buffer.from(lines.join(''), 'utf8');
}

function padded(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc(Math.ceil(data.length / 512) * 512 - data.length)]);
}

test('16. a global pax header is refused: tar -x would apply its path, forkd would not', () =>
  withData(async (ctx) => {
    const records = paxData({ path: 'evil-name' });
    const tarred = await tarBytes(validCraft());
    const bytes = zstd(
      Buffer.concat([rawHeader('pax_global_header', 'g', records.length), padded(records), tarred]),
    );
    await assertRejected(ctx, bytes, PackRejectedError, /global pax header/);
  }));

test('17. numeric fields that are not plain octal or decimal are refused', () =>
  withData(async (ctx) => {
    // A base-256 size field, which tar-stream would decode.
    const tarred = await tarBytes(validCraft());
    const baseTwo56 = Buffer.from(tarred);
    const size = Number.parseInt(baseTwo56.toString('latin1', 124, 135), 8);
    baseTwo56.fill(0, 124, 136);
    baseTwo56[124] = 0x80;
    baseTwo56.writeUInt32BE(size, 132);
    baseTwo56.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of baseTwo56.subarray(0, 512)) sum += b;
    baseTwo56.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    await assertRejected(ctx, zstd(baseTwo56), PackRejectedError, /size is base-256, not octal/);
    // A sparse size in hex, which Number() would have read as 16 MiB.
    const hex = await mutated((c) => {
      const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.memory);
      const entry = c.entries[at]!;
      entry.header.pax = { ...entry.header.pax!, 'GNU.sparse.realsize': '0x1000000' };
    });
    await assertRejected(ctx, hex, PackRejectedError, /GNU\.sparse\.realsize is not a plain decimal number/);
  }));

test('18. files claim no more than they can be: five 256 GiB sparse files are refused before a byte is hashed', () =>
  withData(async (ctx) => {
    const started = Date.now();
    const huge = await mutated((c) => {
      for (const name of [SNAPSHOT_FILES.kernel, SNAPSHOT_FILES.initrd, SNAPSHOT_FILES.vmstate]) {
        const at = c.entries.findIndex((e) => entryName(e) === name);
        c.entries[at] = sparseEntry(name, 256 * 2 ** 30, [], Buffer.alloc(0));
        Object.assign(findLine(c, name), { size: 256 * 2 ** 30, stored_bytes: 0 });
      }
    });
    await assertRejected(
      ctx,
      huge,
      CorruptError,
      /says vmlinux is 274877906944 bytes; a vmlinux is at most 268435456/,
    );
    const bigMachine = await mutated((c) => {
      c.manifest.machine.memory_mib = 1 << 20;
      Object.assign(findLine(c, SNAPSHOT_FILES.memory), { size: 2 ** 40 });
    });
    await assertRejected(ctx, bigMachine, PackRejectedError, /declares a 1048576 MiB machine; this host has/);
    assert.ok(Date.now() - started < 10_000, 'refused without reading the claimed bytes');
  }));

test('19. a sparse map with more regions than its size allows is refused', () =>
  withData(async (ctx) => {
    const regions = Array.from({ length: 3000 }, (_, i) => ({ offset: i * 4096, length: 1 }));
    const many = await mutated((c) => {
      const at = c.entries.findIndex((e) => entryName(e) === SNAPSHOT_FILES.memory);
      c.entries[at] = sparseEntry(SNAPSHOT_FILES.memory, MEMORY_MIB * MIB, regions, Buffer.alloc(3000));
      findLine(c, SNAPSHOT_FILES.memory).stored_bytes = 3000;
    });
    await assertRejected(ctx, many, PackRejectedError, /sparse map has 3001 regions \(limit 2049\)/);
  }));

test('20. a highly compressible 512 MiB file unpacks with flat memory: hashing keeps pace', () =>
  withData(async (ctx) => {
    // 512 copies of 1 MiB of noise: ~1 MiB compressed (zstd --long), inside the 1000:1 ratio limit.
    const noise = randomBytes(MIB);
    const initrd = Buffer.concat(Array.from({ length: 512 }, () => noise));
    const craft = validCraft('big-initrd');
    putFile(craft, SNAPSHOT_FILES.initrd, initrd);
    const bytes = await build(craft);
    assert.ok(bytes.length < 4 * MIB, `${bytes.length} bytes compressed`);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10);
    try {
      const result = await unpack(ctx, bytes);
      assert.equal(result.tag, 'big-initrd');
    } finally {
      clearInterval(sampler);
    }
    assert.ok(peak - before < 256 * MIB, `unpack grew by ${Math.round((peak - before) / MIB)} MiB`);
  }));
