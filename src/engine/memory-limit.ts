// Per-child memory limits through cgroups: v2 where the unified hierarchy has
// the memory controller, else the v1 memory controller. One cgroup per child
// under a forkd parent group; removed when the child goes.
import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { pathExists } from '../util/files.js';
import { join } from 'node:path';
import { MissingDependencyError } from '../errors.js';

export type CgroupVersion = 'v2' | 'v1';

export interface MemoryCgroup {
  path: string;
  remove(): Promise<void>;
}

const CGROUP_ROOT = '/sys/fs/cgroup';

export async function detectCgroupMemory(
  root = CGROUP_ROOT,
): Promise<{ version: CgroupVersion; base: string } | null> {
  if (await pathExists(join(root, 'cgroup.controllers'))) {
    return { version: 'v2', base: root };
  }
  if (await pathExists(join(root, 'memory', 'memory.limit_in_bytes'))) {
    return { version: 'v1', base: join(root, 'memory') };
  }
  return null;
}

/** Put `pid` in a new cgroup limited to `limitMib` of memory. */
export async function limitMemory(id: string, pid: number, limitMib: number): Promise<MemoryCgroup> {
  const found = await detectCgroupMemory();
  if (!found) {
    throw new MissingDependencyError('no cgroup memory controller found (v1 or v2)', 'cgroup-memory', {
      hint: 'mount the cgroup memory controller, or run without a memory limit',
    });
  }
  const parent = join(found.base, 'forkd');
  const path = join(parent, id);
  const bytes = String(limitMib * 1024 * 1024);
  if (found.version === 'v2') {
    await mkdir(parent, { recursive: true });
    // Controllers must be enabled in the parent for the child to have memory.max.
    await writeFile(join(found.base, 'cgroup.subtree_control'), '+memory').catch(() => undefined);
    await writeFile(join(parent, 'cgroup.subtree_control'), '+memory').catch(() => undefined);
    await mkdir(path);
    await writeFile(join(path, 'memory.max'), bytes);
    await writeFile(join(path, 'memory.swap.max'), '0').catch(() => undefined);
  } else {
    await mkdir(path, { recursive: true });
    await writeFile(join(path, 'memory.limit_in_bytes'), bytes);
  }
  await writeFile(join(path, 'cgroup.procs'), String(pid));
  return {
    path,
    // rmdir succeeds once the cgroup has no processes left; QEMU is gone by then.
    remove: () => rmdir(path).catch(() => undefined),
  };
}

/** The cgroup an earlier process made for sandbox `id`, if there is one. */
export async function findMemoryCgroup(id: string): Promise<MemoryCgroup | null> {
  const found = await detectCgroupMemory();
  if (!found) return null;
  const path = join(found.base, 'forkd', id);
  if (!(await pathExists(path))) return null;
  return { path, remove: () => rmdir(path).catch(() => undefined) };
}
