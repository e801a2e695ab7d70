import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildQemuArgs, machineShapeKey, type MachineDescription } from '../../src/vmm/machine.js';

function machine(overrides: Partial<MachineDescription> = {}): MachineDescription {
  return {
    qemuBinary: 'qemu-system-x86_64',
    shape: {
      machineType: 'microvm',
      accel: 'tcg',
      cpuModel: 'max',
      vcpus: 1,
      memoryMib: 512,
      hasDisk: true,
      hasNetwork: true,
    },
    boot: { kernelPath: '/s/vmlinux', initrdPath: '/s/initrd.img', cmdline: 'console=ttyS0' },
    paths: {
      qmpSocket: '/r/qmp.sock',
      agentSocket: '/r/agent.sock',
      consoleLog: '/r/console.log',
      ramFile: '/s/memory',
      diskOverlay: '/r/disk.qcow2',
    },
    network: { restrictEgress: false, hostForwards: [] },
    role: 'parent',
    ...overrides,
  };
}

function optionValue(args: string[], flag: string, prefix = ''): string | undefined {
  for (let i = 0; i < args.length - 1; i++)
    if (args[i] === flag && args[i + 1]!.startsWith(prefix)) return args[i + 1];
  return undefined;
}

test('parent and child command lines differ only in RAM sharing and -incoming', () => {
  const parent = buildQemuArgs(machine({ role: 'parent' }));
  const child = buildQemuArgs(machine({ role: 'child' }));
  assert.deepEqual(
    child.slice(0, parent.length).map((a) => a.replace('share=off', 'share=on')),
    parent,
  );
  assert.deepEqual(child.slice(parent.length), ['-incoming', 'defer']);
  assert.match(optionValue(parent, '-object', 'memory-backend-file')!, /share=on/);
  assert.match(optionValue(child, '-object', 'memory-backend-file')!, /share=off/);
});

test('a writer shares its RAM file and never runs guest code', () => {
  const writer = buildQemuArgs(machine({ role: 'writer' }));
  assert.match(optionValue(writer, '-object', 'memory-backend-file')!, /share=on/);
  assert.ok(writer.includes('-S'));
  assert.equal(optionValue(writer, '-incoming'), 'defer');
});

test('restricted egress and host forwards appear on the user netdev', () => {
  const args = buildQemuArgs(
    machine({
      network: { restrictEgress: true, hostForwards: [{ protocol: 'tcp', hostPort: 8080, guestPort: 80 }] },
    }),
  );
  assert.equal(optionValue(args, '-netdev'), 'user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:8080-:80');
});

test('a diskless machine has no block device; a disk needs an overlay path', () => {
  const shape = { ...machine().shape, hasDisk: false };
  const args = buildQemuArgs(machine({ shape, paths: { ...machine().paths, diskOverlay: null } }));
  assert.ok(!args.includes('-blockdev'));
  assert.throws(
    () => buildQemuArgs(machine({ paths: { ...machine().paths, diskOverlay: null } })),
    /overlay/,
  );
});

test('commas in paths are escaped for QEMU option syntax', () => {
  const args = buildQemuArgs(machine({ paths: { ...machine().paths, ramFile: '/a,b/memory' } }));
  assert.match(optionValue(args, '-object', 'memory-backend-file')!, /mem-path=\/a,,b\/memory,/);
});

test('TCG translation cache size is passed only under TCG', () => {
  assert.equal(
    optionValue(buildQemuArgs(machine({ tcgTranslationCacheMib: 32 })), '-accel'),
    'tcg,tb-size=32',
  );
  const kvm = machine({
    shape: { ...machine().shape, accel: 'kvm', cpuModel: 'host' },
    tcgTranslationCacheMib: 32,
  });
  assert.equal(optionValue(buildQemuArgs(kvm), '-accel'), 'kvm');
});

test('the shape key changes with anything that breaks a restore', () => {
  const base = machine().shape;
  const key = machineShapeKey(base);
  for (const change of [
    { memoryMib: 256 },
    { vcpus: 2 },
    { accel: 'kvm' as const },
    { cpuModel: 'qemu64' },
    { hasDisk: false },
  ]) {
    assert.notEqual(machineShapeKey({ ...base, ...change }), key, JSON.stringify(change));
  }
});

test('every role runs under QEMU’s seccomp sandbox with spawning denied', () => {
  for (const role of ['parent', 'child', 'writer'] as const) {
    assert.equal(
      optionValue(buildQemuArgs(machine({ role })), '-sandbox'),
      'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    );
  }
});
