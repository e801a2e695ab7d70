// Pure tests of the checks on a caller's own kernel and rootfs paths
// (user-files.ts) and of the boot-failure explanation for a kernel that is
// not forkd's (foreign.ts). No VM.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, TimeoutError, VmExitedError } from '../../src/errors.js';
import { explainForeignKernel } from '../../src/image/foreign.js';
import { checkKernelFile, checkRootfsFile, kernelVersionOf } from '../../src/image/user-files.js';

const dir = mkdtempSync(join(tmpdir(), 'forkd-user-files-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, data: Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}

/** A bzImage-shaped header: "HdrS" at 0x202 and kernel_version pointing at a string. */
function fakeBzImage(version: string): Buffer {
  const buf = Buffer.alloc(0x800);
  buf.write('HdrS', 0x202, 'latin1');
  buf.writeUInt16LE(0x400, 0x20e);
  buf.write(`${version} (builder@host) #1 SMP\0`, 0x600, 'latin1');
  return buf;
}

async function refusal(work: Promise<unknown>, field: string, pattern: RegExp): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(err instanceof InvalidArgumentError, String(err));
    assert.equal(err.argument, field);
    assert.match(err.message, pattern);
    return true;
  });
}

void test('the kernel release comes from a bzImage header or a vmlinux banner', () => {
  assert.equal(kernelVersionOf(fakeBzImage('6.1.0-57-amd64')), '6.1.0-57-amd64');
  const elf = Buffer.concat([
    Buffer.from('\x7fELF junk Linux version %s\0 more'),
    Buffer.from('Linux version 6.6.12 (gcc version 12) #1 SMP\0'),
  ]);
  assert.equal(kernelVersionOf(elf), '6.6.12');
  assert.equal(kernelVersionOf(Buffer.from('no banner here')), null);
});

void test('kernel paths: relative, missing, a directory, not a kernel, an ELF without PVH note', async () => {
  await refusal(checkKernelFile('boot/vmlinuz'), 'kernel', /must be an absolute path/);
  await refusal(checkKernelFile(join(dir, 'nope')), 'kernel', /does not exist/);
  mkdirSync(join(dir, 'a-dir'));
  await refusal(checkKernelFile(join(dir, 'a-dir')), 'kernel', /is not a regular file/);
  await refusal(checkKernelFile(file('text', Buffer.from('hello'))), 'kernel', /not a kernel image/);
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 2; // ELF64
  elf[5] = 1; // little-endian, no program headers
  await refusal(checkKernelFile(file('elf', elf)), 'kernel', /without a PVH entry note/);
  const bz = await checkKernelFile(file('bzImage', fakeBzImage('6.1.0')));
  assert.equal(bz.format, 'bzImage');
});

void test('rootfs paths: not ext4 is refused, an ext4 image is accepted with its UUID', async () => {
  await refusal(checkRootfsFile(''), 'rootfs', /must be a path/);
  await refusal(checkRootfsFile(file('zeros', Buffer.alloc(4096))), 'rootfs', /is not an ext4 file system/);
  await refusal(checkRootfsFile(file('short', Buffer.alloc(10))), 'rootfs', /is not an ext4 file system/);
  const img = join(dir, 'small.ext4');
  const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-U', '0f0e0d0c-0b0a-0908-0706-050403020100', img, '4M']);
  assert.equal(mkfs.status, 0, mkfs.stderr?.toString());
  const rootfs = await checkRootfsFile(img);
  assert.equal(rootfs.uuid, '0f0e0d0c0b0a09080706050403020100');
  assert.equal(rootfs.bytes, 4 << 20);
});

void test('a boot that never answered on a kernel that is not forkd’s says what it may lack', () => {
  const timeout = explainForeignKernel(new TimeoutError('the guest never became ready', 1000), '/k', '/f');
  assert.ok(timeout instanceof InvalidArgumentError);
  assert.ok(timeout.cause instanceof TimeoutError);
  assert.match(
    timeout.message,
    /^the guest did not become ready: the kernel at \/k may lack virtio drivers \(forkd's kernel: \/f\)/,
  );
  const exited = explainForeignKernel(
    new VmExitedError('QEMU exited', { code: 0, signal: null }, 'tail'),
    '/k',
    null,
  );
  assert.ok(exited instanceof InvalidArgumentError);
  assert.match(exited.message, /may lack virtio drivers \(forkd's kernel: none fetched yet/);
  assert.ok(exited.cause instanceof VmExitedError);
  // QEMU still running: the agent answered and the warm runtime failed; that error stands.
  const runtime = new VmExitedError("the guest's warm runtime failed: x", { code: null, signal: null }, '');
  assert.equal(explainForeignKernel(runtime, '/k', '/f'), runtime);
});
