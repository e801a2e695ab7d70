// Pure tests of the image component: module ordering, the newc writer, content
// hashes, kernel package parsing, mirror parsing, recipes. No VM, no network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpioNewc } from '../../src/image/cpio.js';
import { canonicalJson, contentHash } from '../../src/image/hash.js';
import { parseKernelDepends } from '../../src/image/kernel.js';
import {
  moduleName,
  parseModulesBuiltin,
  parseModulesDep,
  resolveModuleOrder,
} from '../../src/image/modules.js';
import { builtinRecipes, getRecipe, guestKernelCmdline } from '../../src/image/recipes.js';
import { aptSources, parseMirror } from '../../src/image/rootfs.js';
import { findXzOffsets } from '../../src/image/vmlinux.js';
import { parseTscKhz } from '../../src/image/host.js';
import { InvalidArgumentError } from '../../src/errors.js';

const FAKE_DEP = `kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_mmio.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/hw_random/virtio-rng.ko.xz: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
`;

void test('module names ignore dashes, directories and compression suffixes', () => {
  assert.equal(moduleName('kernel/drivers/char/hw_random/virtio-rng.ko.xz'), 'virtio_rng');
  assert.equal(moduleName('virtio-rng'), 'virtio_rng');
  assert.equal(moduleName('ext4.ko'), 'ext4');
});

void test('modules resolve dependencies first, each once, in asked order otherwise', () => {
  const deps = parseModulesDep(FAKE_DEP);
  const order = resolveModuleOrder(['virtio_mmio', 'virtio-rng', 'virtio_net', 'ext4'], deps).map(
    (m) => m.name,
  );
  assert.deepEqual(order, [
    'virtio_ring',
    'virtio',
    'virtio_mmio',
    'virtio_rng',
    'failover',
    'net_failover',
    'virtio_net',
    'crc16',
    'mbcache',
    'jbd2',
    'ext4',
  ]);
  // Every module comes after all of its dependencies.
  for (const [i, name] of order.entries()) {
    for (const d of deps.get(name)!.deps) assert.ok(order.indexOf(d) < i, `${d} before ${name}`);
  }
});

void test('built-in modules are skipped and unknown ones are rejected', () => {
  const deps = parseModulesDep(FAKE_DEP);
  const builtin = parseModulesBuiltin('kernel/crypto/crc32c_generic.ko\n');
  const order = resolveModuleOrder(['crc32c_generic', 'virtio'], deps, builtin).map((m) => m.name);
  assert.deepEqual(order, ['virtio_ring', 'virtio']);
  assert.throws(() => resolveModuleOrder(['nope'], deps, builtin), InvalidArgumentError);
});

void test('a dependency cycle is reported', () => {
  const deps = parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n');
  assert.throws(() => resolveModuleOrder(['a'], deps), /cycle/);
});

void test('cpio newc output is deterministic and readable by cpio(1)', () => {
  const entries = [
    { type: 'file' as const, path: '/init', data: Buffer.from('#!/bin/sh\necho hi\n'), mode: 0o755 },
    { type: 'symlink' as const, path: 'bin/sh', target: '/bin/busybox' },
    { type: 'file' as const, path: 'bin/busybox', data: Buffer.from('x'.repeat(1001)), mode: 0o755 },
    { type: 'char' as const, path: 'dev/console', major: 5, minor: 1 },
    { type: 'dir' as const, path: 'tmp', mode: 0o1777 },
  ];
  const a = cpioNewc(entries);
  const b = cpioNewc([...entries].reverse());
  assert.ok(a.equals(b), 'order of input does not matter');
  assert.equal(a.length % 4, 0);
  assert.equal(a.subarray(0, 6).toString(), '070701');

  const list = spawnSync('cpio', ['-t', '--quiet'], { input: a });
  assert.equal(list.status, 0, list.stderr.toString());
  assert.deepEqual(list.stdout.toString().trim().split('\n'), [
    'bin',
    'bin/busybox',
    'bin/sh',
    'dev',
    'dev/console',
    'init',
    'tmp',
  ]);

  const dir = mkdtempSync(join(tmpdir(), 'forkd-cpio-'));
  try {
    writeFileSync(join(dir, 'a.cpio'), a);
    const extract = spawnSync(
      'cpio',
      ['-i', '-d', '--quiet', '--no-absolute-filenames', '-F', join(dir, 'a.cpio')],
      {
        cwd: dir,
      },
    );
    assert.equal(extract.status, 0, extract.stderr.toString());
    assert.equal(readFileSync(join(dir, 'init'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(statSync(join(dir, 'init')).mode & 0o777, 0o755);
    assert.equal(readFileSync(join(dir, 'bin/busybox'), 'utf8'), 'x'.repeat(1001));
    assert.equal(readlinkSync(join(dir, 'bin/sh')), '/bin/busybox');
    assert.equal(statSync(join(dir, 'tmp')).mode & 0o7777, 0o1777);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

void test('cpio rejects duplicate and escaping paths', () => {
  assert.throws(() =>
    cpioNewc([
      { type: 'dir', path: 'a' },
      { type: 'dir', path: '/a/' },
    ]),
  );
  assert.throws(() => cpioNewc([{ type: 'dir', path: 'a/../b' }]));
});

void test('content hash is stable, key-order independent and input-sensitive', () => {
  const recipe = getRecipe('tiny');
  const inputs = {
    recipe,
    kernelCmdline: guestKernelCmdline(recipe),
    kernelVersion: '6.1.0-56-amd64',
    kernelPackageVersion: '6.1.192-2',
    files: { agent: 'aa', init: 'bb', forkdInit: 'cc', busybox: 'dd' },
  };
  const h = contentHash(inputs);
  assert.match(h, /^[0-9a-f]{64}$/);
  assert.equal(contentHash(structuredClone(inputs)), h);
  assert.equal(
    canonicalJson({ b: 1, a: [2, { d: 3, c: 4 }] }),
    canonicalJson({ a: [2, { c: 4, d: 3 }], b: 1 }),
  );
  assert.notEqual(contentHash({ ...inputs, files: { ...inputs.files, agent: 'ab' } }), h);
  assert.notEqual(contentHash({ ...inputs, kernelVersion: '6.1.0-57-amd64' }), h);
  assert.notEqual(contentHash({ ...inputs, recipe: { ...recipe, memoryMib: 512 } }), h);
});

void test('the kernel package is parsed from apt-cache show', () => {
  const show =
    'Package: linux-image-amd64\nVersion: 6.1.192-2\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\n';
  assert.deepEqual(parseKernelDepends(show), {
    packageName: 'linux-image-6.1.0-56-amd64',
    packageVersion: '6.1.192-2',
  });
  assert.equal(parseKernelDepends(''), null);
});

void test('the main Debian mirror is found in deb822 and one-line sources', () => {
  const deb822 = `Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main
`;
  assert.equal(parseMirror([deb822]), 'http://mirror.example/debian');
  assert.equal(
    parseMirror(['# x\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n']),
    'http://ftp.de.debian.org/debian',
  );
  assert.equal(parseMirror(['deb https://packages.cloud.google.com/apt cloud-sdk main\n']), null);
  assert.equal(parseMirror([deb822], 'security'), 'http://deb.debian.org/debian-security');
  assert.equal(parseMirror(['deb http://mirror.example/debian bookworm main\n'], 'security'), null);
});

void test('a release bootstraps from its updates and security suites too; unstable has none', () => {
  const mirrors = { main: 'http://m/debian', security: 'http://s/debian-security' };
  assert.deepEqual(aptSources('bookworm', mirrors), [
    'deb http://m/debian bookworm main',
    'deb http://m/debian bookworm-updates main',
    'deb http://s/debian-security bookworm-security main',
  ]);
  assert.deepEqual(aptSources('sid', mirrors), ['deb http://m/debian sid main']);
});

void test('xz stream offsets are found', () => {
  const buf = Buffer.concat([
    Buffer.alloc(10),
    Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
    Buffer.alloc(3),
  ]);
  assert.deepEqual(findXzOffsets(buf), [10]);
});

void test('recipes are valid and getRecipe lists valid names on error', () => {
  assert.deepEqual(
    builtinRecipes().map((r) => r.name),
    [
      'coding-agent',
      'jupyter-kernel',
      'nodejs',
      'playwright-browser',
      'postgres-fixture',
      'python-datasci',
      'python-numpy',
      'tiny',
    ],
  );
  for (const r of builtinRecipes()) {
    const cmdline = guestKernelCmdline(r);
    for (const want of ['console=ttyS0', 'reboot=k', 'panic=-1', 'init_on_free=1'])
      assert.ok(cmdline.includes(want));
  }
  assert.ok(guestKernelCmdline(getRecipe('python-numpy')).includes('root=/dev/vda'));
  assert.throws(
    () => getRecipe('nope'),
    (err: unknown) =>
      err instanceof InvalidArgumentError &&
      /coding-agent, .*, python-numpy, tiny; or a recipe file/.test(err.message),
  );
});

void test('the host TSC rate is read only where it is stable', () => {
  const vm =
    'model name\t: AMD EPYC\ncpu MHz\t\t: 2596.120\nflags\t\t: fpu tsc constant_tsc nonstop_tsc tsc_known_freq\n\nprocessor : 1\n';
  assert.equal(parseTscKhz(vm), 2596120);
  const intel =
    'model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\ncpu MHz\t\t: 1234.5\nflags\t\t: tsc constant_tsc\n';
  assert.equal(parseTscKhz(intel), 2200000);
  assert.equal(
    parseTscKhz('model name\t: AMD Ryzen\ncpu MHz\t\t: 3400.000\nflags\t\t: tsc constant_tsc\n'),
    null,
  );
  assert.equal(parseTscKhz('cpu MHz\t\t: 2596.120\nflags\t\t: tsc tsc_known_freq\n'), null);
  assert.match(guestKernelCmdline(getRecipe('tiny'), { tscKhz: 2596120 }), /tsc_early_khz=2596120/);
});
