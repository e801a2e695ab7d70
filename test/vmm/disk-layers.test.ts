// flattenDiskLayers on real qcow2 chains (qemu-img, no VM): the layers
// between the top and the new base are kept. `qemu-img convert -B` dropped
// them (it copies only the top's own clusters), which lost a parent
// snapshot's disk writes in every branch.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { link, mkdir, mkdtemp, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { flattenDiskLayers } from '../../src/vmm/disk-layers.js';

let dir: string;

const qemuIo = (image: string, ...cmds: string[]) =>
  execFileSync('qemu-io', [...cmds.flatMap((c) => ['-c', c]), image], { stdio: 'ignore' });
const identical = (a: string, b: string) =>
  execFileSync('qemu-img', ['compare', '-q', a, b], { stdio: 'ignore', cwd: dir });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'forkd-disk-layers-'));
  // base (raw) ← parent's layer ← the sandbox's layer, as a branch sees them.
  await writeFile(join(dir, 'base.raw'), '');
  await truncate(join(dir, 'base.raw'), 64 * 2 ** 20);
  qemuIo(join(dir, 'base.raw'), 'write -P 9 8M 1M');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.raw', '-F', 'raw', 'parent.qcow2'], {
    cwd: dir,
  });
  qemuIo(join(dir, 'parent.qcow2'), 'write -P 1 0 1M', 'write -P 2 40M 1M');
  execFileSync(
    'qemu-img',
    ['create', '-q', '-f', 'qcow2', '-b', join(dir, 'parent.qcow2'), '-F', 'qcow2', 'top.qcow2'],
    {
      cwd: dir,
    },
  );
  qemuIo(join(dir, 'top.qcow2'), 'write -P 3 1M 1M', 'write -P 4 40M 512k');
});

after(() => rm(dir, { recursive: true, force: true }));

void test("flattened onto the raw base, the layer holds the parent's writes and the top's", async () => {
  await flattenDiskLayers(join(dir, 'top.qcow2'), join(dir, 'flat.qcow2'), { name: 'base.raw', cwd: dir });
  identical('flat.qcow2', 'top.qcow2');
});

void test("flattened onto the parent's layer, it holds only what the top wrote, and reads the same", async () => {
  await flattenDiskLayers(join(dir, 'top.qcow2'), join(dir, 'diff.qcow2'), {
    name: 'parent.qcow2',
    format: 'qcow2',
    cwd: dir,
  });
  identical('diff.qcow2', 'top.qcow2');
  assert.ok((await stat(join(dir, 'diff.qcow2'))).size < (await stat(join(dir, 'flat.qcow2'))).size);
});

void test('with the base named as the chain names it (a hard link elsewhere), the result is the same and backed by the new name', async () => {
  const other = join(dir, 'writer');
  await mkdir(other);
  await link(join(dir, 'base.raw'), join(other, 'rootfs.raw'));
  await flattenDiskLayers(join(dir, 'top.qcow2'), join(other, 'flat.qcow2'), {
    name: 'rootfs.raw',
    cwd: other,
    inChainAs: join(dir, 'base.raw'),
  });
  execFileSync('qemu-img', ['compare', '-q', join(other, 'flat.qcow2'), join(dir, 'top.qcow2')]);
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '--output=json', join(other, 'flat.qcow2')], { encoding: 'utf8' }),
  ) as { 'backing-filename'?: string };
  assert.equal(info['backing-filename'], 'rootfs.raw');
});
