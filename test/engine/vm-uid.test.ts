// A VM uid is never handed on while the firewall still lets it out: cleanup
// frees the claim of a VM that died unseen only after taking the uid out of
// every uid set. And with confinement off, no network policy is accepted
// (QEMU would run as forkd's own uid, which the firewall does not key on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, InvalidArgumentError, parseEgress } from '../../src/engine/index.js';
import { checkEgressSupported } from '../../src/engine/fork.js';
import { claimVmUid, VM_UID_RANGE } from '../../src/engine/vm-uid.js';

const nftSet = (set: string) =>
  execFileSync('nft', ['list', 'set', 'inet', 'forkd', set], { encoding: 'utf8' });

test('cleanup frees a dead VM’s uid only after the firewall has forgotten it (a claim of a forkd before host-wide claims too)', async () => {
  const root = await mkdtemp(join(tmpdir(), 'forkd-uid-'));
  // Claims of whatever else runs on this host stay out of it.
  process.env.FORKD_VM_UID_DIR = join(root, 'host-claims');
  try {
    const engine = new Engine({ dataDir: root });
    const uid = VM_UID_RANGE[0] + 4242;
    await engine.firewall.apply(uid, { mode: 'none' }, parseEgress('internet'));
    assert.match(nftSet('internet_uids'), new RegExp(`\\b${uid}\\b`));
    // Its claim names a run dir that is gone: the VM died while no forkd watched.
    await mkdir(join(root, 'vm-uids'), { recursive: true });
    await writeFile(join(root, 'vm-uids', String(uid)), 'sb-gone00000000');
    const report = await engine.cleanup();
    assert.deepEqual(report.removedUidClaims, [uid]);
    assert.deepEqual(await readdir(join(root, 'vm-uids')), []);
    for (const set of ['network_uids', 'internet_uids']) {
      assert.doesNotMatch(nftSet(set), new RegExp(`\\b${uid}\\b`), `${uid} left in ${set}`);
    }
    await engine.close();
  } finally {
    delete process.env.FORKD_VM_UID_DIR;
    await rm(root, { recursive: true, force: true });
  }
});

test('with confinement off, a network policy is refused by name (QEMU would not run as a VM uid)', () => {
  process.env.FORKD_UNCONFINED = '1';
  try {
    assert.throws(() => checkEgressSupported(parseEgress('internet')), InvalidArgumentError);
    assert.doesNotThrow(() => checkEgressSupported(parseEgress('none')));
  } finally {
    delete process.env.FORKD_UNCONFINED;
  }
  assert.doesNotThrow(() => checkEgressSupported(parseEgress('internet')));
});

test('uid claims are host-wide: another data dir never takes a held uid, and frees it only once its run dir is gone', async () => {
  const claims = await mkdtemp(join(tmpdir(), 'forkd-uid-claims-'));
  const [rootA, rootB] = [
    await mkdtemp(join(tmpdir(), 'forkd-uid-a-')),
    await mkdtemp(join(tmpdir(), 'forkd-uid-b-')),
  ];
  process.env.FORKD_VM_UID_DIR = claims;
  try {
    const a = new Engine({ dataDir: rootA });
    const b = new Engine({ dataDir: rootB });
    await mkdir(a.dataDir.vmRunDir('sb-held0000000'), { recursive: true });
    const uid = await claimVmUid(a.dataDir, 'sb-held0000000');
    assert.equal(await readFile(join(claims, String(uid)), 'utf8'), a.dataDir.vmRunDir('sb-held0000000'));
    assert.deepEqual((await b.cleanup()).removedUidClaims, [], "b leaves a's live claim alone");
    await rm(a.dataDir.vmRunDir('sb-held0000000'), { recursive: true });
    assert.deepEqual(
      (await b.cleanup()).removedUidClaims,
      [uid],
      'a claim whose VM is gone is freed from any data dir',
    );
    assert.deepEqual(await readdir(claims), []);
    await Promise.all([a.close(), b.close()]);
  } finally {
    delete process.env.FORKD_VM_UID_DIR;
    for (const dir of [claims, rootA, rootB]) await rm(dir, { recursive: true, force: true });
  }
});
