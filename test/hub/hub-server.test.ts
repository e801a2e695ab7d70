// Pins the self-hosted hub over real HTTP: upload auth and refusals that leave nothing,
// Range serving, and pullPack's verification, resume, failure cleanup and errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AlreadyExistsError,
  CorruptError,
  Engine,
  NotFoundError,
  RemoteError,
} from '../../src/engine/index.js';
import type { PackResult } from '../../src/hub/pack.js';
import { publishPack } from '../../src/hub/publish.js';
import { pullPack, type PullOptions } from '../../src/hub/pull.js';
import { INDEX_SCHEMA_VERSION, type RegistryIndex } from '../../src/hub/registry-index.js';
import { startHubServer, type HubServer } from '../../src/hub/server.js';
import { uploadFile } from '../../src/hub/upload.js';
import type { HostFacts } from '../../src/snapshot/compat.js';
import { DataDir } from '../../src/snapshot/data-dir.js';
import { STAGING_PREFIX, SnapshotStore } from '../../src/snapshot/store.js';
import { qemuProcessesUsing, testEngine } from '../support/engine.js';

const SRC_TAG = 'hub-test-src';
const PACKAGE = 'test/tiny';
const PACK_PATH = '/packs/test/tiny/1.0.forkd.tar.zst';
const TOKEN = 'hub-test-token-' + randomBytes(12).toString('hex');

let engine: Engine;
let scratch: string;
let host: HostFacts;
let packed: PackResult;
let packBytes: Buffer;
/** Read-only hub with test/tiny@1.0 published by publishPack: the pull source. */
let roHub: HubServer;
let roDir: string;
/** Hub that takes uploads with TOKEN; starts empty. */
let upHub: HubServer;
let upDir: string;
const servers: HubServer[] = [];

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: SRC_TAG, recipe: 'tiny', replace: true });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-hub-test-'));
  packed = await engine.pack(SRC_TAG, { output: join(scratch, 'src.forkd.tar.zst') });
  packBytes = await readFile(packed.path);
  host = await engine.hostFacts();
  roDir = join(scratch, 'ro-hub');
  await mkdir(roDir);
  await publishPack({ hubDir: roDir, file: packed.path, name: PACKAGE, version: '1.0' });
  roHub = await startHubServer({ dir: roDir });
  servers.push(roHub);
  upDir = join(scratch, 'up-hub');
  upHub = await startHubServer({ dir: upDir, token: TOKEN });
  servers.push(upHub);
});

after(async () => {
  for (const s of servers) await s.close().catch(() => undefined);
  await engine?.store.remove(SRC_TAG).catch(() => undefined);
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

/** Every regular file under dir, relative, sorted. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath ?? e.path, e.name).slice(dir.length + 1))
    .sort();
}

async function readText(path: string): Promise<string | null> {
  return readFile(path, 'utf8').catch(() => null);
}

async function put(
  hub: HubServer,
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(hub.url + path, {
    method: 'PUT',
    body,
    headers: { 'content-type': 'application/octet-stream', ...headers },
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = { text };
  }
  return { status: res.status, json };
}

/** A GET whose path is sent exactly as written (fetch would resolve `..`). */
function rawGet(hub: HubServer, path: string): Promise<{ status: number; body: string }> {
  const url = new URL(hub.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: url.hostname, port: url.port, path, method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

async function freshStore(name: string): Promise<SnapshotStore> {
  const root = join(scratch, name);
  await mkdir(root, { recursive: true });
  return new SnapshotStore(new DataDir(root));
}

function downloadsDir(store: SnapshotStore): string {
  return join(store.dataDir.root, 'cache', 'downloads');
}

async function entriesOf(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

/** These packs are unsigned: what is pinned here is transfer and verification, not trust (see signing.test). */
const UNSIGNED_OK = { keys: new Map(), allowUnsigned: true };

function pull(store: SnapshotStore, opts: Omit<PullOptions, 'store' | 'host' | 'trust'>) {
  return pullPack({ ...opts, store, host, trust: UNSIGNED_OK });
}

function sha256(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

async function readIndex(dir: string): Promise<RegistryIndex> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as RegistryIndex;
}

// -------------------------------------------------------------------- tests

void test('a hub without a token refuses uploads with 403 and writes nothing', async () => {
  const filesBefore = await filesUnder(roDir);
  const indexBefore = await readText(join(roDir, 'index.json'));
  const res = await put(roHub, '/packs/test/tiny/2.0.forkd.tar.zst', packBytes, {
    authorization: `Bearer ${TOKEN}`,
  });
  assert.equal(res.status, 403);
  assert.match(String(res.json.error), /uploads are disabled/);
  assert.equal(res.json.code, 'forbidden', 'hub errors carry the same codes as the daemon');
  assert.deepEqual(await filesUnder(roDir), filesBefore);
  assert.equal(await readText(join(roDir, 'index.json')), indexBefore);
});

void test('uploads need the right bearer token; a published version is 409 unless forced', async () => {
  const url = upHub.url + PACK_PATH;
  const missing = await put(upHub, PACK_PATH, packBytes);
  assert.equal(missing.status, 401);
  assert.match(String(missing.json.error), /missing/);
  assert.equal(missing.json.code, 'unauthorized');
  const wrong = await put(upHub, PACK_PATH, packBytes, { authorization: 'Bearer not-the-token-at-all' });
  assert.equal(wrong.status, 401);
  assert.match(String(wrong.json.error), /invalid/);
  assert.deepEqual(await filesUnder(upDir), [], 'refused uploads leave nothing');

  const up = await uploadFile({ url: new URL(url), path: packed.path, token: TOKEN });
  assert.equal(up.status, 201);
  assert.deepEqual(JSON.parse(up.body), {
    name: PACKAGE,
    version: '1.0',
    url,
    sha256: packed.sha256,
    size_bytes: packed.bytes,
  });
  assert.equal(sha256(await readFile(join(upDir, 'packs/test/tiny/1.0.forkd.tar.zst'))), packed.sha256);
  const index = await readIndex(upDir);
  assert.equal(index.schema_version, INDEX_SCHEMA_VERSION);
  const versions = index.packages[PACKAGE]?.versions;
  assert.ok(versions, 'test/tiny is in the index');
  assert.equal(versions['1.0']?.sha256, packed.sha256);
  assert.equal(versions['1.0']?.size_bytes, packed.bytes);
  assert.equal(versions['1.0']?.url, 'packs/test/tiny/1.0.forkd.tar.zst');
  assert.equal(versions.latest?.version, '1.0');
  assert.equal(versions.latest?.sha256, packed.sha256);

  const indexText = await readText(join(upDir, 'index.json'));
  const again = await uploadFile({ url: new URL(url), path: packed.path, token: TOKEN }).then(
    () => assert.fail('a second upload of 1.0 was accepted'),
    (err: unknown) => err,
  );
  assert.ok(again instanceof RemoteError, String(again));
  assert.equal(again.status, 409);
  assert.match(again.message, /already published/);
  assert.equal(await readText(join(upDir, 'index.json')), indexText, 'a refused upload leaves the index');

  const forced = await uploadFile({ url: new URL(`${url}?force=1`), path: packed.path, token: TOKEN });
  assert.equal(forced.status, 201);
  assert.equal((JSON.parse(forced.body) as { sha256: string }).sha256, packed.sha256);
  assert.deepEqual(await filesUnder(upDir), ['index.json', 'packs/test/tiny/1.0.forkd.tar.zst']);
});

void test('an upload that is not a pack, or names a bad version, is refused and leaves nothing', async () => {
  const auth = { authorization: `Bearer ${TOKEN}` };
  const filesBefore = await filesUnder(upDir);
  const indexBefore = await readText(join(upDir, 'index.json'));

  const junk = await put(upHub, '/packs/test/junk/1.0.forkd.tar.zst', randomBytes(256 * 1024), auth);
  assert.equal(junk.status, 409, JSON.stringify(junk.json));
  assert.match(String(junk.json.error), /not a forkd pack/);
  // An upload over a published version must not clobber it either.
  const over = await put(upHub, PACK_PATH + '?force=1', randomBytes(4096), auth);
  assert.equal(over.status, 409, JSON.stringify(over.json));

  for (const path of [
    '/packs/test/tiny/latest.forkd.tar.zst',
    '/packs/test/tiny/2.0.tar.gz',
    '/packs/Test/tiny/2.0.forkd.tar.zst',
    '/packs/test/tiny/..%2F..%2F..%2Fescaped.forkd.tar.zst',
  ]) {
    const res = await put(upHub, path, packBytes, auth);
    assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.json)}`);
  }

  assert.deepEqual(await filesUnder(upDir), filesBefore, 'no pack and no .upload-* temp file remain');
  assert.equal(await readText(join(upDir, 'index.json')), indexBefore);
  assert.deepEqual(await filesUnder(scratch).then((f) => f.filter((p) => p.includes('escaped'))), []);
  assert.equal(sha256(await readFile(join(upDir, 'packs/test/tiny/1.0.forkd.tar.zst'))), packed.sha256);
});

void test('packs are served with Range, the index as JSON, and nothing outside packs/', async () => {
  const res = await fetch(roHub.url + PACK_PATH, { headers: { range: 'bytes=100-199' } });
  assert.equal(res.status, 206);
  assert.equal(res.headers.get('content-range'), `bytes 100-199/${packBytes.length}`);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), packBytes.subarray(100, 200));

  const whole = await fetch(roHub.url + PACK_PATH);
  assert.equal(whole.status, 200);
  assert.equal(sha256(Buffer.from(await whole.arrayBuffer())), packed.sha256);

  const index = await fetch(roHub.url + '/index.json');
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type') ?? '', /application\/json/);
  const body = (await index.json()) as RegistryIndex;
  assert.equal(body.schema_version, 1);
  assert.equal(body.packages[PACKAGE]?.versions['1.0']?.sha256, packed.sha256);

  const empty = await startHubServer({ dir: join(scratch, 'empty-hub') });
  servers.push(empty);
  assert.deepEqual(await (await fetch(empty.url + '/index.json')).json(), {
    schema_version: 1,
    packages: {},
  });

  const secret = 'not-for-download-' + randomBytes(8).toString('hex');
  await writeFile(join(roDir, 'packs/test/tiny/.secret'), secret);
  await writeFile(join(scratch, 'outside.txt'), secret);
  await writeFile(join(roDir, 'inside.txt'), secret);
  try {
    for (const path of [
      '/packs/test/tiny/.secret',
      '/packs/test/tiny/%2esecret',
      '/packs/../inside.txt',
      '/packs/../../outside.txt',
      '/packs/%2e%2e/inside.txt',
      '/packs/%2e%2e/%2e%2e/outside.txt',
      '/packs/test/tiny/..%2f..%2f..%2finside.txt',
      '/packs/test/',
      '/packs/',
    ]) {
      const got = await rawGet(roHub, path);
      assert.notEqual(got.status, 200, `${path} answered 200`);
      assert.ok(!got.body.includes(secret), `${path} leaked the file`);
    }
  } finally {
    await rm(join(roDir, 'packs/test/tiny/.secret'), { force: true });
    await rm(join(roDir, 'inside.txt'), { force: true });
  }
});

void test('a package pulled by name is verified against the index, installed and forkable', async () => {
  const store = await freshStore('pull-by-name');
  const notices: string[] = [];
  const result = await pull(store, { ref: PACKAGE, hub: roHub.url, onNotice: (m) => notices.push(m) });
  assert.equal(result.tag, 'tiny');
  assert.equal(result.verified, 'pack');
  assert.equal(result.sha256, packed.sha256);
  assert.equal(result.url, roHub.url + PACK_PATH);
  assert.equal(result.resumedFrom, 0);
  assert.equal(result.downloadBytes, packed.bytes);
  assert.equal(result.pack.tag, SRC_TAG);
  assert.deepEqual(notices, []);
  const { manifest } = await store.getReady('tiny');
  assert.equal(manifest.tag, 'tiny');
  assert.deepEqual(await entriesOf(downloadsDir(store)), [], 'the download is deleted once installed');

  const engine2 = new Engine({
    dataDir: store.dataDir.root,
    accel: (process.env.FORKD_TEST_ACCEL as 'tcg' | 'kvm' | undefined) ?? 'auto',
  });
  const forked = await engine2.fork({ tag: 'tiny', n: 1 });
  const child = forked.children[0];
  assert.ok(child?.ok, child && !child.ok ? String(child.error) : 'no child');
  try {
    const r = await child.sandbox.agent.exec({ shell: 'echo pulled-$((6*7))' });
    assert.equal(r.exitCode, 0);
    assert.equal(r.stdout.toString(), 'pulled-42\n');
  } finally {
    await child.sandbox.kill();
    await engine2.close();
  }
  assert.deepEqual(qemuProcessesUsing(store.dataDir.runDir), []);
});

void test('a pull resumes a .partial download, and a .partial with wrong bytes is thrown away', async () => {
  const half = Math.floor(packBytes.length / 2);
  const store = await freshStore('pull-resume');
  await mkdir(downloadsDir(store), { recursive: true });
  const partial = join(downloadsDir(store), `${packed.sha256}.forkd.tar.zst.partial`);
  await writeFile(partial, packBytes.subarray(0, half));
  const notices: string[] = [];
  const result = await pull(store, { ref: PACKAGE, hub: roHub.url, onNotice: (m) => notices.push(m) });
  assert.equal(result.resumedFrom, half);
  assert.equal(result.downloadBytes, packBytes.length);
  assert.equal(result.sha256, packed.sha256);
  assert.ok(
    notices.some((n) => n.includes(`byte ${half}`)),
    notices.join('\n'),
  );
  assert.equal((await store.getReady('tiny')).manifest.status, 'ready');
  assert.deepEqual(await entriesOf(downloadsDir(store)), []);

  const bad = await freshStore('pull-bad-partial');
  await mkdir(downloadsDir(bad), { recursive: true });
  const badPartial = join(downloadsDir(bad), `${packed.sha256}.forkd.tar.zst.partial`);
  const wrong = Buffer.from(packBytes.subarray(0, half));
  for (let i = 0; i < wrong.length; i++) wrong[i] = wrong[i]! ^ 0xff;
  await writeFile(badPartial, wrong);
  await assert.rejects(pull(bad, { ref: PACKAGE, hub: roHub.url }), (err: unknown) => {
    assert.ok(err instanceof CorruptError, String(err));
    assert.match(err.message, /sha256/);
    assert.ok(err.message.includes(packed.sha256), err.message);
    return true;
  });
  assert.deepEqual(await entriesOf(downloadsDir(bad)), [], 'the bad partial is deleted');
  assert.equal(await bad.exists('tiny'), false);
  assert.deepEqual(
    await entriesOf(bad.dataDir.snapshotsDir).then((e) => e.filter((n) => n !== '.locks')),
    [],
  );
});

void test('a pack URL pulled without an index is verified file by file, and says so', async () => {
  const store = await freshStore('pull-url');
  const notices: string[] = [];
  const result = await pull(store, { ref: roHub.url + PACK_PATH, onNotice: (m) => notices.push(m) });
  assert.equal(result.verified, 'files');
  assert.equal(result.tag, SRC_TAG, "without a package name the pack's own tag is used");
  assert.equal(result.sha256, packed.sha256);
  assert.ok(
    notices.some((n) => /no published sha256/.test(n)),
    `notices: ${JSON.stringify(notices)}`,
  );
  assert.equal((await store.getReady(SRC_TAG)).manifest.status, 'ready');
  assert.deepEqual(await entriesOf(downloadsDir(store)), []);
});

void test('an index with the wrong sha256 makes the pull fail and leaves nothing', async () => {
  const dir = join(scratch, 'tampered-hub');
  await mkdir(dir);
  const index = await readIndex(roDir);
  const flip = (s: string) => s.slice(0, -1) + (s.endsWith('0') ? '1' : '0');
  const pkg = index.packages[PACKAGE]!;
  for (const v of Object.values(pkg.versions)) {
    v.sha256 = flip(v.sha256);
    v.url = roHub.url + PACK_PATH; // absolute: the pack itself is genuine
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  const tampered = await startHubServer({ dir });
  servers.push(tampered);

  const store = await freshStore('pull-tampered');
  await assert.rejects(pull(store, { ref: `${PACKAGE}@1.0`, hub: tampered.url }), (err: unknown) => {
    assert.ok(err instanceof CorruptError, String(err));
    assert.match(err.message, /sha256/);
    return true;
  });
  assert.equal(await store.exists('tiny'), false);
  const left = await entriesOf(store.dataDir.snapshotsDir);
  assert.deepEqual(
    left.filter((n) => n.startsWith(STAGING_PREFIX) || n === 'tiny'),
    [],
    `snapshots dir: ${left.join(', ')}`,
  );
  assert.deepEqual(await entriesOf(downloadsDir(store)), [], 'no download or .partial left');
});

void test('an existing tag is refused before anything is downloaded; --force replaces it', async () => {
  const store = await freshStore('pull-exists');
  await mkdir(store.dataDir.snapshotDir('tiny'), { recursive: true });
  await writeFile(join(store.dataDir.snapshotDir('tiny'), 'marker'), 'mine');
  let progressed = 0;
  await assert.rejects(
    pull(store, { ref: PACKAGE, hub: roHub.url, onProgress: () => void progressed++ }),
    AlreadyExistsError,
  );
  assert.equal(progressed, 0, 'no transfer progress was reported');
  assert.deepEqual(await entriesOf(downloadsDir(store)), [], 'nothing was downloaded');
  assert.equal(await readText(join(store.dataDir.snapshotDir('tiny'), 'marker')), 'mine');

  const replaced = await pull(store, { ref: PACKAGE, hub: roHub.url, force: true });
  assert.equal(replaced.tag, 'tiny');
  assert.equal((await store.getReady('tiny')).manifest.status, 'ready');
  assert.equal(await readText(join(store.dataDir.snapshotDir('tiny'), 'marker')), null);
  const left = await entriesOf(store.dataDir.snapshotsDir);
  assert.deepEqual(
    left.filter((n) => n.startsWith(STAGING_PREFIX)),
    [],
    left.join(', '),
  );
});

void test('an unreachable hub is a RemoteError naming it; unknown packages are NotFoundError', async () => {
  const port = await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  const store = await freshStore('pull-errors');
  const origin = `http://127.0.0.1:${port}`;
  await assert.rejects(pull(store, { ref: PACKAGE, hub: origin }), (err: unknown) => {
    assert.ok(err instanceof RemoteError, String(err));
    assert.ok(err.message.includes(origin), err.message);
    assert.equal(err.status, null);
    return true;
  });
  await assert.rejects(pull(store, { ref: 'test/no-such-pack', hub: roHub.url }), (err: unknown) => {
    assert.ok(err instanceof NotFoundError, String(err));
    assert.match(err.message, /test\/no-such-pack/);
    return true;
  });
  await assert.rejects(pull(store, { ref: `${PACKAGE}@9.9`, hub: roHub.url }), NotFoundError);
  await assert.rejects(pull(store, { ref: roHub.url + '/packs/test/tiny/9.9.forkd.tar.zst' }), NotFoundError);
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await entriesOf(downloadsDir(store)), []);
});

// Publishes share the index through a lock that waits: none is refused.
void test('concurrent publishPack calls both end up in the index', async () => {
  const dir = join(scratch, 'concurrent-hub');
  await mkdir(dir);
  const results = await Promise.allSettled(
    ['1.0', '2.0'].map((version) => publishPack({ hubDir: dir, file: packed.path, name: PACKAGE, version })),
  );
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  assert.deepEqual(failures, [], 'both publishes succeed');
  const versions = (await readIndex(dir)).packages[PACKAGE]?.versions ?? {};
  assert.deepEqual(Object.keys(versions).sort(), ['1.0', '2.0', 'latest']);
  assert.ok(['1.0', '2.0'].includes(versions.latest?.version ?? ''));
  assert.deepEqual(await filesUnder(dir), [
    'index.json',
    'packs/test/tiny/1.0.forkd.tar.zst',
    'packs/test/tiny/2.0.forkd.tar.zst',
  ]);
});

void test('concurrent uploads to one hub server are all published', async () => {
  const dir = join(scratch, 'concurrent-up-hub');
  const hub = await startHubServer({ dir, token: TOKEN });
  servers.push(hub);
  const versions = ['1.0', '2.0', '3.0', '4.0'];
  const results = await Promise.allSettled(
    versions.map((version) =>
      uploadFile({
        url: new URL(`${hub.url}/packs/test/tiny/${version}.forkd.tar.zst`),
        path: packed.path,
        token: TOKEN,
      }),
    ),
  );
  // Whatever happens, a failed upload leaves no temp file behind.
  assert.deepEqual(
    (await filesUnder(dir)).filter((f) => f.includes('.upload-') || f.endsWith('.tmp')),
    [],
  );
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : []));
  assert.deepEqual(failures, [], 'every upload answers 201');
  const published = (await readIndex(dir)).packages[PACKAGE]?.versions ?? {};
  assert.deepEqual(Object.keys(published).sort(), [...versions, 'latest']);
});

void test('push to a presigned object-store URL: exact Content-Length, no chunking, no Authorization, URL redacted', async () => {
  const seen: { headers: Record<string, string | string[] | undefined>; bytes: number }[] = [];
  const store = createHttpServer((req, res) => {
    let bytes = 0;
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      seen.push({ headers: req.headers, bytes });
      res
        .writeHead(seen.length === 1 ? 200 : 403)
        .end(seen.length === 1 ? '' : '<Error>SignatureDoesNotMatch</Error>');
    });
  });
  await new Promise<void>((resolve) => store.listen(0, '127.0.0.1', resolve));
  const port = (store.address() as AddressInfo).port;
  const url = new URL(`http://127.0.0.1:${port}/bucket/tiny.forkd.tar.zst?X-Amz-Signature=secret123`);
  try {
    const sent = await uploadFile({ url, path: packed.path });
    assert.equal(sent.status, 200);
    const first = seen[0]!;
    assert.equal(first.headers['content-length'], String(packBytes.length));
    assert.equal(first.bytes, packBytes.length);
    assert.equal(first.headers['transfer-encoding'], undefined);
    assert.equal(first.headers.authorization, undefined);
    await assert.rejects(
      uploadFile({ url, path: packed.path }),
      (err: unknown) =>
        err instanceof RemoteError &&
        err.status === 403 &&
        !err.message.includes('secret123') &&
        /SignatureDoesNotMatch/.test(err.message),
    );
  } finally {
    await new Promise((resolve) => store.close(resolve));
  }
});
