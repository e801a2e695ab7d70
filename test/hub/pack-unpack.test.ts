// Real snapshots through a pack and back: the archive is a standard sparse
// tar that GNU tar reads, a pack relocates to another data dir (under another
// tag) and its children run, and a QEMU mismatch is refused at unpack and at
// fork naming both versions.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { AbortedError, Engine, IncompatibleError, InvalidArgumentError } from '../../src/engine/index.js';
import { UntrustedPackError } from '../../src/errors.js';
import { PACK_MANIFEST_ENTRY } from '../../src/hub/pack-manifest.js';
import { readPackManifest } from '../../src/hub/pack-info.js';
import {
  generateSigningKey,
  keyIdOf,
  PACK_SIGNATURE_ENTRY,
  type TrustPolicy,
} from '../../src/hub/signing.js';
import { unpackPack } from '../../src/hub/unpack.js';
import { MANIFEST_FILE, type SnapshotManifest } from '../../src/snapshot/manifest.js';
import { sha256File } from '../../src/util/files.js';
import { qemuProcessesUsing, testEngine } from '../support/engine.js';

const TAG = 'test-pack-tiny';
let engine: Engine;
let work: string;
let packPath: string;
let packSha: string;
let trust: TrustPolicy;
let keyId: string;
let signKey: KeyObject;

before(async () => {
  engine = testEngine();
  work = await mkdtemp(join(tmpdir(), 'forkd-pack-'));
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  packPath = join(work, 'tiny.forkd.tar.zst');
  const key = generateSigningKey();
  keyId = key.keyId;
  signKey = createPrivateKey(key.privatePem);
  const packed = await engine.pack(TAG, { output: packPath, description: 'tiny test guest', signKey });
  packSha = packed.sha256;
  const publicKey = createPublicKey(key.publicPem);
  trust = { keys: new Map([[keyIdOf(publicKey), publicKey]]), allowUnsigned: false };
});

after(async () => {
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

void test('a pack lists every snapshot file with its size and sha256, and stores the RAM file without its zeros', async () => {
  const { manifest, signature } = await readPackManifest(packPath);
  assert.equal(signature?.key_id, keyId, 'the pack carries its signature');
  const { dir } = await engine.store.getReady(TAG);
  assert.equal(manifest.tag, TAG);
  assert.equal(manifest.description, 'tiny test guest');
  assert.deepEqual(manifest.chain, []);
  assert.equal(manifest.machine.memory_mib, 256);
  for (const file of manifest.files) {
    assert.equal(file.size, (await stat(join(dir, file.path))).size, file.path);
    assert.equal(file.sha256, await sha256File(join(dir, file.path)), file.path);
  }
  const memory = manifest.files.find((f) => f.path === 'memory');
  assert.ok(memory && memory.stored_bytes < memory.size / 2, 'zero pages are not stored');
  assert.ok((await stat(packPath)).size < memory.stored_bytes, 'and the rest is compressed');
});

void test('GNU tar extracts a pack into the same files (the format is a standard sparse tar)', async () => {
  const out = join(work, 'gnu-tar');
  execFileSync('mkdir', ['-p', out]);
  execFileSync('tar', ['-I', 'zstd -d --long=29', '-xf', packPath, '-C', out]);
  const { dir } = await engine.store.getReady(TAG);
  const names = (await readdir(out)).sort();
  assert.ok(names.includes(PACK_MANIFEST_ENTRY));
  assert.ok(names.includes(PACK_SIGNATURE_ENTRY));
  for (const name of names.filter((n) => n !== PACK_MANIFEST_ENTRY && n !== PACK_SIGNATURE_ENTRY)) {
    assert.equal(await sha256File(join(out, name)), await sha256File(join(dir, name)), name);
  }
  const memory = await stat(join(out, 'memory'));
  assert.ok(memory.blocks * 512 < memory.size, 'memory comes out sparse');
});

void test('packing the same snapshot twice gives the same bytes (ed25519 signatures are deterministic)', async () => {
  const again = await engine.pack(TAG, {
    output: join(work, 'again.forkd.tar.zst'),
    description: 'tiny test guest',
    signKey,
  });
  assert.equal(again.sha256, packSha);
});

void test('a pack unpacks into another data dir under a new tag, sparse, and its children run', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'forkd-unpacked-'));
  const other = new Engine({ dataDir });
  try {
    const unpacked = await other.unpack({
      source: createReadStream(packPath),
      sourceName: packPath,
      tag: 'moved',
      trust,
    });
    assert.equal(unpacked.tag, 'moved');
    assert.equal(unpacked.signer, keyId);
    const manifest = JSON.parse(
      await readFile(join(unpacked.dir, MANIFEST_FILE), 'utf8'),
    ) as SnapshotManifest;
    assert.equal(manifest.tag, 'moved');
    const memory = await stat(join(unpacked.dir, 'memory'));
    assert.ok(memory.blocks * 512 < memory.size / 2, 'the RAM file is sparse again');
    const restore = await other.fork({ tag: 'moved', n: 2 });
    try {
      for (const child of restore.children) {
        assert.ok(child.ok, child.ok ? '' : String(child.error));
        const r = await child.sandbox.agent.exec({ shell: 'echo hello from $(hostname)' });
        assert.equal(r.exitCode, 0);
        assert.match(r.stdout.toString(), /^hello from /);
      }
    } finally {
      await Promise.all(restore.children.map((c) => (c.ok ? c.sandbox.kill() : Promise.resolve())));
    }
    assert.deepEqual(qemuProcessesUsing(dataDir), []);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

void test('a pack from another QEMU version is refused at unpack, naming both, and leaves nothing', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'forkd-unpacked-'));
  const other = new Engine({ dataDir });
  const local = (await engine.qemu()).version;
  try {
    await assert.rejects(
      unpackPack({
        source: createReadStream(packPath),
        sourceName: packPath,
        store: other.store,
        host: { qemuVersion: '99.1.0', kvmUsable: false },
        trust,
      }),
      (err: unknown) =>
        err instanceof IncompatibleError && err.message.includes(local) && err.message.includes('99.1.0'),
    );
    assert.deepEqual(await readdir(other.dataDir.snapshotsDir), []);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

void test('a snapshot whose QEMU version differs is refused at fork, naming both', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'forkd-unpacked-'));
  const other = new Engine({ dataDir });
  const local = (await engine.qemu()).version;
  try {
    const { dir } = await other.unpack({ source: createReadStream(packPath), sourceName: packPath, trust });
    const path = join(dir, MANIFEST_FILE);
    const manifest = JSON.parse(await readFile(path, 'utf8')) as SnapshotManifest;
    await writeFile(path, JSON.stringify({ ...manifest, qemu: { ...manifest.qemu, version: '6.2.0' } }));
    await assert.rejects(
      other.fork({ tag: TAG, n: 1 }),
      (err: unknown) =>
        err instanceof IncompatibleError && err.message.includes('6.2.0') && err.message.includes(local),
    );
    assert.deepEqual(qemuProcessesUsing(dataDir), []);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

void test('an aborted pack or unpack stops mid-stream with AbortedError and leaves nothing', async () => {
  const packing = new AbortController();
  await assert.rejects(
    engine.pack(TAG, {
      output: join(work, 'aborted.forkd.tar.zst'),
      signal: packing.signal,
      onProgress: (p) => {
        if (p.phase === 'pack' && p.doneBytes > 0) packing.abort();
      },
    }),
    AbortedError,
  );
  assert.deepEqual(
    (await readdir(work)).filter((n) => n.startsWith('aborted')),
    [],
  );
  const dataDir = await mkdtemp(join(tmpdir(), 'forkd-unpack-abort-'));
  const other = new Engine({ dataDir });
  try {
    const unpacking = new AbortController();
    await assert.rejects(
      other.unpack({
        source: createReadStream(packPath, { highWaterMark: 64 * 1024 }),
        sourceName: packPath,
        trust,
        signal: unpacking.signal,
        onProgress: (p) => {
          if (p.phase === 'unpack' && p.doneBytes > 0) unpacking.abort();
        },
      }),
      AbortedError,
    );
    assert.deepEqual(await readdir(other.dataDir.snapshotsDir).catch(() => []), []);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
});

void test('a bad level or an unwritable output fails with no file left behind', async () => {
  await assert.rejects(
    engine.pack(TAG, { output: join(work, 'bad.forkd.tar.zst'), level: 40 }),
    InvalidArgumentError,
  );
  await assert.rejects(
    engine.pack(TAG, { output: join(work, 'no', 'such', 'dir', 'x.forkd.tar.zst') }),
    /ENOENT/,
  );
  const left = (await readdir(work)).filter((n) => n.includes('partial') || n.startsWith('bad'));
  assert.deepEqual(left, []);
});

void test('an unsigned pack, or one signed by a key not trusted, is refused naming the key, and leaves nothing', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'forkd-unpacked-'));
  const other = new Engine({ dataDir });
  const unsignedPath = join(work, 'unsigned.forkd.tar.zst');
  try {
    await engine.pack(TAG, { output: unsignedPath });
    const refusedUnsigned = other.unpack({
      source: createReadStream(unsignedPath),
      sourceName: unsignedPath,
      trust: { ...trust, allowUnsigned: false },
    });
    await assert.rejects(
      refusedUnsigned,
      (err: unknown) =>
        err instanceof UntrustedPackError && err.keyId === null && /not signed/.test(err.message),
    );
    const refusedSigned = other.unpack({
      source: createReadStream(packPath),
      sourceName: packPath,
      trust: { keys: new Map(), allowUnsigned: true },
    });
    await assert.rejects(
      refusedSigned,
      (err: unknown) =>
        err instanceof UntrustedPackError && err.keyId === keyId && err.message.includes(keyId),
    );
    assert.deepEqual(await readdir(other.dataDir.snapshotsDir), [], 'nothing installed, nothing staged');
    const allowed = await other.unpack({
      source: createReadStream(unsignedPath),
      sourceName: unsignedPath,
      trust: { keys: new Map(), allowUnsigned: true },
    });
    assert.equal(allowed.signer, null);
  } finally {
    await rm(dataDir, { recursive: true, force: true });
    await rm(unsignedPath, { force: true });
  }
});
