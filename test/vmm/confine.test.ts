import { test } from 'node:test';
import assert from 'node:assert/strict';
import { confinedArgv, type ConfinementSpec, type HostLayout } from '../../src/vmm/confine.js';
import { jailedExit } from '../../src/vmm/process.js';

const layout: HostLayout = { mergedUsr: true, present: new Set(['/lib64', '/etc/ld.so.cache']) };

function spec(overrides: Partial<ConfinementSpec> = {}): ConfinementSpec {
  return {
    identity: { uid: 1879048200, gid: 1879048200, groups: [] },
    readOnlyPaths: ['/data/snapshots/t'],
    writablePaths: ['/data/run/sb-1/q'],
    devices: [],
    network: 'isolated',
    env: { PATH: '/usr/bin:/bin' },
    ...overrides,
  };
}

/** The value after each occurrence of `flag`, with `arity` values per occurrence. */
function values(argv: string[], flag: string, arity = 1): string[][] {
  const out: string[][] = [];
  const end = argv.indexOf('--');
  for (let i = 0; i < end; i++) if (argv[i] === flag) out.push(argv.slice(i + 1, i + 1 + arity));
  return out;
}

test('a root host: bwrap with its own namespaces, then setpriv to the VM uid with no capabilities', () => {
  const argv = confinedArgv(['/usr/bin/qemu-system-x86_64', '-m', '256M'], spec(), layout);
  assert.equal(argv[0], 'bwrap');
  for (const flag of [
    '--unshare-ipc',
    '--unshare-pid',
    '--unshare-uts',
    '--unshare-net',
    '--as-pid-1',
    '--clearenv',
  ]) {
    assert.ok(argv.includes(flag), flag);
  }
  assert.ok(!argv.includes('--unshare-user'), 'no user namespace: setpriv needs the real uid change');
  const tail = argv.slice(argv.indexOf('--') + 1);
  assert.deepEqual(tail, [
    'setpriv',
    '--reuid=1879048200',
    '--regid=1879048200',
    '--clear-groups',
    '--inh-caps=-all',
    '--bounding-set=-all',
    '--no-new-privs',
    '--',
    '/usr/bin/qemu-system-x86_64',
    '-m',
    '256M',
  ]);
});

test('only the given paths are bound, read-only or writable, at the same place; ancestors are walkable', () => {
  const argv = confinedArgv(['qemu'], spec(), layout);
  assert.deepEqual(values(argv, '--ro-bind', 2), [
    ['/usr', '/usr'],
    ['/etc/ld.so.cache', '/etc/ld.so.cache'],
    ['/data/snapshots/t', '/data/snapshots/t'],
  ]);
  assert.deepEqual(values(argv, '--bind', 2), [['/data/run/sb-1/q', '/data/run/sb-1/q']]);
  assert.deepEqual(
    values(argv, '--dir').map(([d]) => d),
    ['/data', '/data/run', '/data/snapshots', '/data/run/sb-1'],
  );
  assert.deepEqual(values(argv, '--perms').flat(), ['0755', '0755', '0755', '0755']);
  assert.deepEqual(values(argv, '--dev-bind', 2), [], 'no /dev/kvm unless asked');
});

test('KVM adds /dev/kvm and the kvm group; host networking keeps the host namespace', () => {
  const argv = confinedArgv(
    ['qemu'],
    spec({ devices: ['/dev/kvm'], identity: { uid: 5, gid: 5, groups: [993] }, network: 'host' }),
    layout,
  );
  assert.deepEqual(values(argv, '--dev-bind', 2), [['/dev/kvm', '/dev/kvm']]);
  assert.ok(argv.includes('--groups=993'));
  assert.ok(!argv.includes('--unshare-net'));
});

test('an unprivileged host: bwrap makes a user namespace and drops every capability itself', () => {
  const argv = confinedArgv(['qemu'], spec({ identity: null }), { mergedUsr: false, present: new Set() });
  assert.ok(argv.includes('--unshare-user'));
  assert.deepEqual(values(argv, '--cap-drop'), [['ALL']]);
  assert.ok(!argv.includes('setpriv'));
  assert.deepEqual(values(argv, '--ro-bind', 2).slice(0, 4), [
    ['/usr', '/usr'],
    ['/bin', '/bin'],
    ['/sbin', '/sbin'],
    ['/lib', '/lib'],
  ]);
});

test("a jailed QEMU's death by signal is reported as that signal, not bwrap's 128+N", () => {
  assert.deepEqual(jailedExit(135, null, true), { code: null, signal: 'SIGBUS' });
  assert.deepEqual(jailedExit(137, null, true), { code: null, signal: 'SIGKILL' });
  assert.deepEqual(jailedExit(1, null, true), { code: 1, signal: null });
  assert.deepEqual(
    jailedExit(135, null, false),
    { code: 135, signal: null },
    'an unjailed exit code is its own',
  );
});
