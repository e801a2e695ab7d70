// The hub's "done when", through the CLI as a user runs it: a python-numpy
// parent is packed, published to a `forkd hub serve` on loopback, and a
// clean data dir's quickstart pulls it (no image build) and forks 10
// children that all answer a numpy eval.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { runCli } from '../support/cli.js';
import { qemuProcessesUsing, testEngine } from '../support/engine.js';

const TAG = 'test-hub-python-numpy';
let engine: Engine;
let work: string;
let hub: ChildProcess | null = null;
let hubUrl = '';
let keyId = '';

before(async () => {
  engine = testEngine();
  work = await mkdtemp(join(tmpdir(), 'forkd-hub-cli-'));
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
  const keys = runCli(['keygen', '--name', 'publisher', '--out', join(work, 'keys'), '--json']);
  assert.equal(keys.status, 0, keys.stderr);
  keyId = (JSON.parse(keys.stdout) as { key_id: string }).key_id;
  const packed = runCli([
    '--data-dir',
    engine.dataDir.root,
    'pack',
    '--tag',
    TAG,
    '--level',
    '3',
    '-o',
    join(work, 'pn.forkd.tar.zst'),
    '--sign-key',
    join(work, 'keys', 'publisher.key'),
    '--json',
  ]);
  assert.equal(packed.status, 0, packed.stderr);
  assert.equal((JSON.parse(packed.stdout) as { signer: string }).signer, keyId);
  const published = runCli([
    'hub',
    'publish',
    join(work, 'pn.forkd.tar.zst'),
    '--name',
    'forkd/python-numpy',
    '--version',
    '1',
    '--dir',
    join(work, 'hub'),
  ]);
  assert.equal(published.status, 0, published.stderr);
  await writeFile(join(work, 'token'), 'a-test-token-that-is-long-enough\n');
  hub = spawn(
    process.execPath,
    [
      'dist/src/cli/main.js',
      'hub',
      'serve',
      join(work, 'hub'),
      '--bind',
      '127.0.0.1:0',
      '--token-file',
      join(work, 'token'),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  hubUrl = await new Promise<string>((resolve, reject) => {
    let text = '';
    hub!.stderr!.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (match) resolve(match[1]!);
    });
    hub!.once('exit', (code) => reject(new Error(`hub exited ${code}: ${text}`)));
  });
});

after(async () => {
  if (hub && hub.exitCode === null) {
    const exited = new Promise((resolve) => hub!.once('exit', resolve));
    hub.kill('SIGTERM');
    await exited;
  }
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
});

void test('pull of an unsigned pack fails without --allow-unsigned, before the download', async () => {
  const unsigned = join(work, 'unsigned.forkd.tar.zst');
  const packed = runCli([
    '--data-dir',
    engine.dataDir.root,
    'pack',
    '--tag',
    TAG,
    '--level',
    '1',
    '-o',
    unsigned,
  ]);
  assert.equal(packed.status, 0, packed.stderr);
  const published = runCli([
    'hub',
    'publish',
    unsigned,
    '--name',
    'forkd/unsigned',
    '--version',
    '1',
    '--dir',
    join(work, 'hub'),
  ]);
  assert.equal(published.status, 0, published.stderr);
  const dataDir = join(work, 'unsigned-pull');
  const r = runCli(['--data-dir', dataDir, 'pull', 'forkd/unsigned', '--hub', hubUrl]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /forkd\/unsigned is published unsigned \(pass --allow-unsigned/);
  assert.deepEqual(await readdir(join(dataDir, 'cache', 'downloads')).catch(() => []), []);
});

void test('a pack signed by a key not trusted here is refused before the download, naming the key', async () => {
  const dataDir = join(work, 'untrusting');
  const r = runCli(['--data-dir', dataDir, 'pull', 'forkd/python-numpy', '--hub', hubUrl]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`signed by key ${keyId}, which is not trusted \\(pass --trust-key`));
  assert.deepEqual(await readdir(join(dataDir, 'cache', 'downloads')).catch(() => []), []);
});

void test('on a clean data dir that trusts the publisher, quickstart pulls python-numpy from the hub (no image build) and 10 children answer', async () => {
  const dataDir = join(work, 'clean');
  const trusted = runCli(['--data-dir', dataDir, 'trust', join(work, 'keys', 'publisher.pub'), '--json']);
  assert.equal(trusted.status, 0, trusted.stderr);
  assert.equal((JSON.parse(trusted.stdout) as { key_id: string }).key_id, keyId);
  const r = runCli(['--data-dir', dataDir, 'quickstart', '--hub', hubUrl, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout) as { n: number; ok: number; parent: string };
  assert.deepEqual(
    { n: summary.n, ok: summary.ok, parent: summary.parent },
    { n: 10, ok: 10, parent: 'pulled' },
  );
  assert.match(r.stderr, /pulling forkd\/python-numpy/);
  const entries = await readdir(dataDir);
  assert.ok(!entries.includes('images'), `no image was built (data dir has ${entries.join(', ')})`);
  assert.deepEqual(await readdir(join(dataDir, 'cache', 'downloads')), [], 'the download is not kept');
  assert.deepEqual(qemuProcessesUsing(dataDir), []);
});

void test('images --hub lists the package and its latest version; pull refuses an existing tag before downloading', () => {
  const listed = runCli(['images', '--hub', hubUrl, '--json']);
  assert.equal(listed.status, 0, listed.stderr);
  const { packages } = JSON.parse(listed.stdout) as {
    packages: { name: string; version: string; same_as: string | null }[];
  };
  assert.deepEqual(
    packages.filter((p) => p.name === 'forkd/python-numpy').map((p) => [p.name, p.version, p.same_as]),
    [
      ['forkd/python-numpy', '1', null],
      ['forkd/python-numpy', 'latest', '1'],
    ],
  );
  const again = runCli(['--data-dir', join(work, 'clean'), 'pull', 'forkd/python-numpy', '--hub', hubUrl]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /^forkd: error: snapshot "python-numpy" already exists \(pass --force/);
});

void test('without a hub, pull of a package name says how to name one; a dead hub is named', () => {
  const none = runCli(['--data-dir', join(work, 'none'), 'pull', 'forkd/python-numpy']);
  assert.equal(none.status, 2);
  assert.match(
    none.stderr,
    /no hub to resolve forkd\/python-numpy against \(pass --hub URL or set FORKD_HUB_URL/,
  );
  const dead = runCli([
    '--data-dir',
    join(work, 'none'),
    'pull',
    'forkd/python-numpy',
    '--hub',
    'http://127.0.0.1:9',
  ]);
  assert.equal(dead.status, 1);
  assert.match(dead.stderr, /cannot reach http:\/\/127\.0\.0\.1:9/);
});

void test('push needs the hub token, and with it publishes a new version', () => {
  const url = `${hubUrl}/packs/forkd/python-numpy/2.forkd.tar.zst`;
  const denied = runCli(['push', '--file', join(work, 'pn.forkd.tar.zst'), url]);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /HTTP 401/);
  const pushed = runCli([
    'push',
    '--file',
    join(work, 'pn.forkd.tar.zst'),
    url,
    '--token-file',
    join(work, 'token'),
    '--json',
  ]);
  assert.equal(pushed.status, 0, pushed.stderr);
  const answer = (JSON.parse(pushed.stdout) as { answer: { version: string } }).answer;
  assert.equal(answer.version, '2');
});

void test('a refused push of a snapshot leaves no temporary pack behind', async () => {
  const url = `${hubUrl}/packs/forkd/python-numpy/3.forkd.tar.zst`;
  const denied = runCli(['--data-dir', engine.dataDir.root, 'push', '--tag', TAG, '--level', '1', url]);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /HTTP 401/);
  assert.deepEqual(await readdir(join(engine.dataDir.root, 'cache', 'packs')), []);
});

void test('CLI usage errors name the problem and the fix', () => {
  const missing = runCli(['unpack', join(work, 'nope.forkd.tar.zst')]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /pack file .*nope\.forkd\.tar\.zst not found \(make one with `forkd pack/);
  const noTag = runCli(['pack']);
  assert.equal(noTag.status, 2);
  assert.match(noTag.stderr, /required option '--tag <tag>'/);
  const both = runCli(['push', 'http://127.0.0.1:9/x']);
  assert.equal(both.status, 2);
  assert.match(both.stderr, /pass exactly one of --tag and --file/);
  const badName = runCli([
    'hub',
    'publish',
    join(work, 'pn.forkd.tar.zst'),
    '--name',
    'NoSlash',
    '--dir',
    join(work, 'x'),
  ]);
  assert.equal(badName.status, 2);
  assert.match(badName.stderr, /invalid package name "NoSlash"/);
});

void test('quickstart with an unreachable hub says so and builds the parent locally', async () => {
  // The shared test data dir has the python-numpy image cached, so this is a boot, not a bootstrap.
  const r = runCli([
    '--data-dir',
    engine.dataDir.root,
    'quickstart',
    '--hub',
    'http://127.0.0.1:9',
    '-n',
    '2',
    '--json',
  ]);
  try {
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stderr,
      /could not pull forkd\/python-numpy from http:\/\/127\.0\.0\.1:9: cannot reach .*building locally instead/,
    );
    const summary = JSON.parse(r.stdout) as { ok: number; parent: string };
    assert.deepEqual([summary.ok, summary.parent], [2, 'built']);
  } finally {
    await engine.store.remove('python-numpy').catch(() => undefined);
  }
});
