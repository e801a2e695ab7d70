// Builds the machine description for a snapshot's parent, children and
// writers from one place, so the device layout can never drift between them.
import { join } from 'node:path';
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import type { MachineDescription, MachineRole, NetworkConfig } from '../vmm/machine.js';
import type { RunDir } from './run-dir.js';

/**
 * TCG's translation cache is private to each QEMU and is most of an idle
 * child's memory (measured: ~43 MiB PSS per tiny child at 32 MiB, ~27 at 8).
 * Smaller caches flush more often under heavy guest code; FORKD_TCG_CACHE_MIB
 * tunes it per host.
 */
export const DEFAULT_TCG_CACHE_MIB = 16;

/**
 * A parent is one VM for the length of its warm-up, and a warm-up runs much
 * more guest code than an idle child: at 16 MiB, loading playwright-core,
 * launching Chromium and opening a page took 27 + 31 + 33 s under TCG, at
 * 256 MiB 10 + 7.5 + 8.4 s (the cache is filled only as code is translated).
 */
export const PARENT_TCG_CACHE_MIB = 256;

/**
 * Children whose every eval runs a lot of guest code get a bigger cache: a
 * browser child's page.title() took 610 ms at 16 MiB and 85 ms at 128 MiB,
 * re-translating Chromium on every call. Filled only as code is translated,
 * so an idle child pays little of it.
 */
const RUNTIME_TCG_CACHE_MIB: Readonly<Partial<Record<string, number>>> = { browser: 128 };

/** FORKD_TCG_CACHE_MIB when set, else the runtime's own size, else the default. */
export function tcgCacheMib(env: NodeJS.ProcessEnv = process.env, runtimeKind?: string): number {
  const value = Number(env.FORKD_TCG_CACHE_MIB);
  if (Number.isInteger(value) && value >= 1 && value <= 4096) return value;
  return (runtimeKind && RUNTIME_TCG_CACHE_MIB[runtimeKind]) || DEFAULT_TCG_CACHE_MIB;
}

export interface MachineForOptions {
  qemuBinary: string;
  snapshotDir: string;
  manifest: Pick<SnapshotManifest, 'machine' | 'kernel' | 'disk'> &
    Partial<Pick<SnapshotManifest, 'runtime'>>;
  runDir: RunDir;
  role: MachineRole;
  network: NetworkConfig;
  /** Disk the VM writes to: the snapshot's own layer for a parent, a private overlay otherwise. */
  diskOverlay?: string;
}

export function machineFor(opts: MachineForOptions): MachineDescription {
  const { manifest, snapshotDir, runDir } = opts;
  return {
    qemuBinary: opts.qemuBinary,
    shape: manifest.machine,
    boot: {
      kernelPath: join(snapshotDir, SNAPSHOT_FILES.kernel),
      initrdPath: join(snapshotDir, SNAPSHOT_FILES.initrd),
      cmdline: manifest.kernel.cmdline,
    },
    paths: {
      qmpSocket: runDir.paths.qmpSocket,
      agentSocket: runDir.paths.agentSocket,
      consoleLog: runDir.paths.consoleLog,
      ramFile: join(snapshotDir, SNAPSHOT_FILES.memory),
      diskOverlay: manifest.disk ? (opts.diskOverlay ?? runDir.paths.diskOverlay) : null,
    },
    network: opts.network,
    role: opts.role,
    tcgTranslationCacheMib:
      manifest.machine.accel !== 'tcg'
        ? undefined
        : opts.role === 'parent'
          ? Math.max(PARENT_TCG_CACHE_MIB, tcgCacheMib())
          : tcgCacheMib(process.env, manifest.runtime?.kind),
  };
}
