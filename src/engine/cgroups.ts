// Per-sandbox cgroups: every sandbox's QEMU is put in cgroups of its own
// (before its guest runs) that cap memory, CPU (a cap in cores and a
// weight), pids and disk I/O (bandwidth and IOPS on the data dir's disk),
// and that account what it used. cgroup v2 (one unified directory with the
// controllers enabled) where the host has it, else the v1 hierarchies
// (memory, cpu, cpuacct, pids, blkio). Layout: <controller root>/forkd/<id>.
import { mkdir, readFile, rmdir, stat, writeFile, realpath } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, MissingDependencyError } from '../errors.js';
import { pathExists } from '../util/files.js';

export interface SandboxLimits {
  memoryMib?: number | null;
  /** A hard cap in cores (0.5 = half a core), enforced over 100 ms periods. */
  cpuCores?: number | null;
  /** Relative share of CPU under contention, 1..10000 (100 = the default). */
  cpuWeight?: number | null;
  /** Threads and processes QEMU may have (the guest's own processes live inside the VM). */
  pidsMax?: number | null;
  ioReadBps?: number | null;
  ioWriteBps?: number | null;
  ioReadIops?: number | null;
  ioWriteIops?: number | null;
}

export interface SandboxUsage {
  cpuMs: number;
  memoryBytes: number;
  ioReadBytes: number;
  ioWriteBytes: number;
}

/** A QEMU's threads: vCPUs, the main loop, RCU, up to 64 I/O workers. A runaway beyond this is a bug or an attack. */
export const DEFAULT_PIDS_MAX = 512;

export type CgroupVersion = 'v2' | 'v1';

const CGROUP_ROOT = '/sys/fs/cgroup';
const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'blkio'] as const;
type V1Controller = (typeof V1_CONTROLLERS)[number];

export interface CgroupLayout {
  version: CgroupVersion;
  /** v2: the unified root; v1: each mounted controller's root. */
  roots: Partial<Record<V1Controller | 'unified', string>>;
}

let layoutCache: Promise<CgroupLayout | null> | undefined;

export function detectCgroups(root = CGROUP_ROOT): Promise<CgroupLayout | null> {
  const detect = async (): Promise<CgroupLayout | null> => {
    if (await pathExists(join(root, 'cgroup.controllers')))
      return { version: 'v2', roots: { unified: root } };
    const roots: CgroupLayout['roots'] = {};
    for (const c of V1_CONTROLLERS)
      if (await pathExists(join(root, c, 'cgroup.procs'))) roots[c] = join(root, c);
    return Object.keys(roots).length > 0 ? { version: 'v1', roots } : null;
  };
  if (root !== CGROUP_ROOT) return detect();
  layoutCache ??= detect();
  return layoutCache;
}

/** Checked before anything starts: one message naming the field and its range. */
export function checkLimits(limits: SandboxLimits): void {
  const range = (name: string, value: number | null | undefined, min: number, max: number) => {
    if (value === null || value === undefined) return;
    if (!Number.isFinite(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be from ${min} to ${max}, got ${value}`, name);
    }
  };
  range('memory_limit_mib', limits.memoryMib, 16, 1 << 20);
  range('cpu_cores', limits.cpuCores, 0.01, 1024);
  range('cpu_weight', limits.cpuWeight, 1, 10000);
  range('pids_max', limits.pidsMax, 16, 1 << 22);
  for (const [name, v] of [
    ['io_read_bps', limits.ioReadBps],
    ['io_write_bps', limits.ioWriteBps],
    ['io_read_iops', limits.ioReadIops],
    ['io_write_iops', limits.ioWriteIops],
  ] as const) {
    range(name, v, 1, Number.MAX_SAFE_INTEGER);
    if (v !== null && v !== undefined && !Number.isInteger(v)) {
      throw new InvalidArgumentError(`${name} must be a whole number`, name);
    }
  }
}

function hasIoLimit(l: SandboxLimits): boolean {
  return [l.ioReadBps, l.ioWriteBps, l.ioReadIops, l.ioWriteIops].some((v) => v !== null && v !== undefined);
}

/**
 * The whole disk ("major:minor") holding `path`: I/O throttling applies to
 * disks, not partitions or virtual filesystems.
 */
export async function diskOf(path: string): Promise<string> {
  const { dev } = await stat(path, { bigint: true });
  // glibc's dev_t encoding (makedev).
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  const sys = `/sys/dev/block/${major}:${minor}`;
  if (!(await pathExists(sys))) {
    throw new InvalidArgumentError(
      `disk I/O limits need the data dir on a block device (${path} is on device ${major}:${minor})`,
      'io',
      { hint: 'put the data dir on a disk, or spawn without io limits' },
    );
  }
  const real = await realpath(sys);
  if (await pathExists(join(real, 'partition'))) {
    return (await readFile(join(dirname(real), 'dev'), 'utf8')).trim();
  }
  return `${major}:${minor}`;
}

export class SandboxCgroup {
  constructor(
    readonly layout: CgroupLayout,
    /** Every directory of this sandbox, one per hierarchy (one on v2). */
    readonly dirs: Partial<Record<V1Controller | 'unified', string>>,
  ) {}

  get path(): string {
    return this.dirs.unified ?? this.dirs.memory ?? Object.values(this.dirs)[0] ?? '';
  }

  /** rmdir succeeds once the cgroup has no processes left; QEMU is gone by then. */
  async remove(): Promise<void> {
    for (const dir of Object.values(this.dirs)) await rmdir(dir).catch(() => undefined);
  }

  async usage(): Promise<SandboxUsage> {
    const read = (dir: string | undefined, file: string) =>
      dir ? readFile(join(dir, file), 'utf8').catch(() => '') : Promise.resolve('');
    if (this.layout.version === 'v2') {
      const dir = this.dirs.unified;
      const cpu = Number(/usage_usec (\d+)/.exec(await read(dir, 'cpu.stat'))?.[1] ?? 0) / 1000;
      const io = await read(dir, 'io.stat');
      const sum = (key: string) =>
        [...io.matchAll(new RegExp(`${key}=(\\d+)`, 'g'))].reduce((a, m) => a + Number(m[1]), 0);
      return {
        cpuMs: Math.round(cpu),
        memoryBytes: Number((await read(dir, 'memory.current')).trim() || 0),
        ioReadBytes: sum('rbytes'),
        ioWriteBytes: sum('wbytes'),
      };
    }
    const io = await read(this.dirs.blkio, 'blkio.throttle.io_service_bytes');
    const sum = (op: string) =>
      [...io.matchAll(new RegExp(`^\\S+ ${op} (\\d+)$`, 'gm'))].reduce((a, m) => a + Number(m[1]), 0);
    return {
      cpuMs: Math.round(Number((await read(this.dirs.cpuacct, 'cpuacct.usage')).trim() || 0) / 1e6),
      memoryBytes: Number((await read(this.dirs.memory, 'memory.usage_in_bytes')).trim() || 0),
      ioReadBytes: sum('Read'),
      ioWriteBytes: sum('Write'),
    };
  }
}

/** Put `pid` (a QEMU that has not run guest code yet) in new cgroups for sandbox `id` with `limits`. */
export async function createSandboxCgroup(
  id: string,
  pid: number,
  limits: SandboxLimits,
  ioPath: string,
): Promise<SandboxCgroup | null> {
  const layout = await detectCgroups();
  if (!layout) {
    const asked = Object.values(limits).some((v) => v !== null && v !== undefined);
    if (!asked) return null; // nothing to enforce; usage is not measured on such hosts
    throw new MissingDependencyError('no cgroup controllers found (v1 or v2)', 'cgroups', {
      hint: 'mount cgroups, or spawn without resource limits',
    });
  }
  const device = hasIoLimit(limits) ? await diskOf(ioPath) : null;
  const cgroup =
    layout.version === 'v2'
      ? await createV2(layout, id, limits, device)
      : await createV1(layout, id, limits, device);
  try {
    for (const dir of Object.values(cgroup.dirs)) await writeFile(join(dir, 'cgroup.procs'), String(pid));
  } catch (err) {
    await cgroup.remove();
    throw err;
  }
  return cgroup;
}

async function createV2(
  layout: CgroupLayout,
  id: string,
  l: SandboxLimits,
  device: string | null,
): Promise<SandboxCgroup> {
  const root = layout.roots.unified!;
  const parent = join(root, 'forkd');
  await mkdir(parent, { recursive: true });
  // Controllers must be enabled in every ancestor for the leaf to have their files.
  for (const dir of [root, parent]) {
    for (const c of ['memory', 'cpu', 'pids', 'io']) {
      await writeFile(join(dir, 'cgroup.subtree_control'), `+${c}`).catch(() => undefined);
    }
  }
  const dir = join(parent, id);
  await mkdir(dir);
  const cgroup = new SandboxCgroup(layout, { unified: dir });
  try {
    const set = (file: string, value: string) => writeFile(join(dir, file), value);
    if (l.memoryMib) {
      await set('memory.max', String(l.memoryMib * 1024 * 1024));
      await set('memory.swap.max', '0').catch(() => undefined);
    }
    if (l.cpuCores) await set('cpu.max', `${Math.round(l.cpuCores * 100_000)} 100000`);
    if (l.cpuWeight) await set('cpu.weight', String(l.cpuWeight));
    await set('pids.max', String(l.pidsMax ?? DEFAULT_PIDS_MAX));
    if (device) {
      const parts = [
        l.ioReadBps ? `rbps=${l.ioReadBps}` : '',
        l.ioWriteBps ? `wbps=${l.ioWriteBps}` : '',
        l.ioReadIops ? `riops=${l.ioReadIops}` : '',
        l.ioWriteIops ? `wiops=${l.ioWriteIops}` : '',
      ].filter((p) => p !== '');
      await set('io.max', `${device} ${parts.join(' ')}`);
    }
    return cgroup;
  } catch (err) {
    await cgroup.remove();
    throw err;
  }
}

async function createV1(
  layout: CgroupLayout,
  id: string,
  l: SandboxLimits,
  device: string | null,
): Promise<SandboxCgroup> {
  const dirs: SandboxCgroup['dirs'] = {};
  const cgroup = new SandboxCgroup(layout, dirs);
  const need = (c: V1Controller, why: boolean): string | null => {
    const root = layout.roots[c];
    if (!root && why) {
      throw new MissingDependencyError(`the cgroup v1 ${c} controller is not mounted`, `cgroup-${c}`, {
        hint: `mount it at /sys/fs/cgroup/${c}, or spawn without that limit`,
      });
    }
    return root ?? null;
  };
  try {
    for (const c of V1_CONTROLLERS) {
      const wanted =
        (c === 'memory' && Boolean(l.memoryMib)) ||
        (c === 'cpu' && Boolean(l.cpuCores || l.cpuWeight)) ||
        (c === 'blkio' && device !== null);
      const root = need(c, wanted);
      if (!root) continue;
      const dir = join(root, 'forkd', id);
      await mkdir(dir, { recursive: true });
      dirs[c] = dir;
    }
    const set = (c: V1Controller, file: string, value: string) => writeFile(join(dirs[c]!, file), value);
    if (l.memoryMib) await set('memory', 'memory.limit_in_bytes', String(l.memoryMib * 1024 * 1024));
    if (l.cpuCores) {
      await set('cpu', 'cpu.cfs_period_us', '100000');
      await set('cpu', 'cpu.cfs_quota_us', String(Math.round(l.cpuCores * 100_000)));
    }
    // v1 shares: 1024 is the default weight (v2's 100).
    if (l.cpuWeight)
      await set('cpu', 'cpu.shares', String(Math.max(2, Math.round((l.cpuWeight * 1024) / 100))));
    if (dirs.pids) await set('pids', 'pids.max', String(l.pidsMax ?? DEFAULT_PIDS_MAX));
    if (device) {
      for (const [file, v] of [
        ['blkio.throttle.read_bps_device', l.ioReadBps],
        ['blkio.throttle.write_bps_device', l.ioWriteBps],
        ['blkio.throttle.read_iops_device', l.ioReadIops],
        ['blkio.throttle.write_iops_device', l.ioWriteIops],
      ] as const) {
        if (v) await set('blkio', file, `${device} ${v}`);
      }
    }
    return cgroup;
  } catch (err) {
    await cgroup.remove();
    throw err;
  }
}

/** The cgroups an earlier process made for sandbox `id`, if any. */
export async function findSandboxCgroup(id: string): Promise<SandboxCgroup | null> {
  const layout = await detectCgroups();
  if (!layout) return null;
  const dirs: SandboxCgroup['dirs'] = {};
  for (const [c, root] of Object.entries(layout.roots) as [V1Controller | 'unified', string][]) {
    const dir = join(root, 'forkd', id);
    if (await pathExists(dir)) dirs[c] = dir;
  }
  return Object.keys(dirs).length > 0 ? new SandboxCgroup(layout, dirs) : null;
}

/** Every forkd sandbox cgroup directory on this host (for cleanup). */
export async function forkdCgroupParents(): Promise<string[]> {
  const layout = await detectCgroups();
  return layout ? Object.values(layout.roots).map((root) => join(root, 'forkd')) : [];
}
