// forkd hub build on the tiny recipe: one command builds, snapshots, packs,
// signs and publishes it into a hub directory, which forkd hub serve then
// serves to forkd pull, and the pulled snapshot forks. An unknown recipe
// stops the build before anything is built, naming it; no temporary
// snapshot is left behind either way.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import type { RegistryIndex } from '../../src/hub/registry-index.js';
import { startHubServer } from '../../src/hub/server.js';
import { loadTrustPolicy } from '../../src/hub/signing.js';
import { runCli } from '../support/cli.js';
import { inChildOf, testEngine, TEST_DATA_DIR } from '../support/engine.js';

let work: string;
let engine: Engine;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'forkd-hub-build-'));
  engine = testEngine();
});

after(async () => {
  await rm(work, { recursive: true, force: true });
});

/** Temporary snapshots a hub build makes (<recipe>-hub-<random>). */
async function buildTags(): Promise<string[]> {
  return (await engine.store.list()).map((r) => r.tag).filter((t) => /-hub-[0-9a-f]{6}$/.test(t));
}

void test('hub build publishes a signed recipe that hub serve serves to pull, and the pull forks', async () => {
  const keygen = runCli(['keygen', '--out', work, '--name', 'hub', '--json']);
  assert.equal(keygen.status, 0, keygen.stderr);
  const keyId = (JSON.parse(keygen.stdout) as { key_id: string }).key_id;
  const hubDir = join(work, 'hub');
  const built = runCli([
    '--data-dir',
    TEST_DATA_DIR,
    'hub',
    'build',
    hubDir,
    '--recipes',
    'tiny',
    '--version',
    '1',
    '--sign-key',
    join(work, 'hub.key'),
    '--json',
  ]);
  assert.equal(built.status, 0, built.stderr);
  assert.match(built.stderr, /\[1\/1 tiny\] published forkd\/tiny@1/, 'progress names the recipe');
  const result = JSON.parse(built.stdout) as {
    packages: { name: string; version: string; signer: string }[];
  };
  assert.deepEqual(
    result.packages.map((p) => [p.name, p.version, p.signer]),
    [['forkd/tiny', '1', keyId]],
  );
  const index = JSON.parse(await readFile(join(hubDir, 'index.json'), 'utf8')) as RegistryIndex;
  assert.equal(index.packages['forkd/tiny']?.versions['latest']?.version, '1');
  assert.deepEqual(await buildTags(), [], 'its temporary snapshot is gone');

  const server = await startHubServer({ dir: hubDir });
  try {
    const other = testEngine(join(work, 'data'));
    const trust = await loadTrustPolicy(other.dataDir.root, [join(work, 'hub.pub')], false);
    const pulled = await other.pull({ ref: 'forkd/tiny', hub: server.url, trust });
    assert.equal(pulled.tag, 'tiny');
    assert.equal(pulled.signer, keyId);
    assert.equal(await inChildOf(other, 'tiny', 'echo from the hub'), 'from the hub\n');
  } finally {
    await server.close();
  }
});

void test('an unknown recipe stops hub build before anything is built, naming it', async () => {
  const hubDir = join(work, 'hub2');
  const r = runCli(['--data-dir', TEST_DATA_DIR, 'hub', 'build', hubDir, '--recipes', 'tiny,nope', '--json']);
  assert.equal(r.status, 2, r.stderr);
  assert.match((JSON.parse(r.stdout) as { error: string }).error, /unknown image recipe 'nope'/);
  await assert.rejects(readFile(join(hubDir, 'index.json')), /ENOENT/, 'nothing published');
  assert.deepEqual(await buildTags(), []);
});
