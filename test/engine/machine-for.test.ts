// The TCG translation cache each QEMU gets: small for idle children, bigger
// for a browser's, big for a parent's warm-up; FORKD_TCG_CACHE_MIB wins for
// children and never shrinks a parent's. Pure: no VM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_TCG_CACHE_MIB,
  PARENT_TCG_CACHE_MIB,
  machineFor,
  tcgCacheMib,
} from '../../src/engine/machine-for.js';
import { runDirPaths, type RunDir } from '../../src/engine/run-dir.js';
import type { SnapshotManifest } from '../../src/snapshot/manifest.js';
import type { MachineRole } from '../../src/vmm/machine.js';

void test('a child’s cache follows its runtime unless FORKD_TCG_CACHE_MIB says otherwise', () => {
  assert.equal(tcgCacheMib({}), DEFAULT_TCG_CACHE_MIB);
  assert.equal(tcgCacheMib({}, 'python'), DEFAULT_TCG_CACHE_MIB);
  assert.equal(tcgCacheMib({}, 'browser'), 128);
  assert.equal(tcgCacheMib({ FORKD_TCG_CACHE_MIB: '48' }, 'browser'), 48);
  assert.equal(tcgCacheMib({ FORKD_TCG_CACHE_MIB: 'lots' }), DEFAULT_TCG_CACHE_MIB);
  assert.equal(tcgCacheMib({ FORKD_TCG_CACHE_MIB: '0' }), DEFAULT_TCG_CACHE_MIB);
});

void test('a parent gets the big cache under TCG, and no cache size under KVM', () => {
  const manifest = (accel: 'tcg' | 'kvm') =>
    ({
      machine: {
        accel,
        machineType: 'microvm',
        cpuModel: 'max',
        vcpus: 1,
        memoryMib: 256,
        hasDisk: false,
        hasNetwork: true,
      },
      kernel: { version: '6.1', sha256: '', cmdline: '' },
      disk: null,
      runtime: { kind: 'browser', imports: [] },
    }) as unknown as Pick<SnapshotManifest, 'machine' | 'kernel' | 'disk' | 'runtime'>;
  const cache = (accel: 'tcg' | 'kvm', role: MachineRole) =>
    machineFor({
      qemuBinary: 'qemu-system-x86_64',
      snapshotDir: '/nonexistent',
      manifest: manifest(accel),
      runDir: { paths: runDirPaths('/nonexistent/run') } as unknown as RunDir,
      role,
      network: { restrictEgress: true, hostForwards: [] },
    }).tcgTranslationCacheMib;
  assert.equal(cache('tcg', 'parent'), PARENT_TCG_CACHE_MIB);
  assert.equal(cache('tcg', 'child'), 128);
  assert.equal(cache('kvm', 'parent'), undefined);
  assert.equal(cache('kvm', 'child'), undefined);
});
