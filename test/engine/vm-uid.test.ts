// A VM uid is never handed on while the firewall still lets it out: cleanup
// frees the claim of a VM that died unseen only after taking the uid out of
// every uid set. And with confinement off, no network policy is accepted
// (QEMU would run as forkd's own uid, which the firewall does not key on).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, InvalidArgumentError, parseEgress } from '../../src/engine/index.js';
import { checkEgressSupported } from '../../src/engine/fork.js';
import { VM_UID_RANGE } from '../../src/engine/vm-uid.js';

const nftSet = (set: string) =>
  execFileSync('nft', ['list', 'set', 'inet', 'forkd', set], { encoding: 'utf8' });

test('cleanup frees a dead VM’s uid only after the firewall has forgotten it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'forkd-uid-'));
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
