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

export function tcgCacheMib(env: NodeJS.ProcessEnv = process.env): number {
  const value = Number(env.FORKD_TCG_CACHE_MIB);
  return Number.isInteger(value) && value >= 1 && value <= 4096 ? value : DEFAULT_TCG_CACHE_MIB;
}

export interface MachineForOptions {
  qemuBinary: string;
  snapshotDir: string;
  manifest: Pick<SnapshotManifest, 'machine' | 'kernel' | 'disk'>;
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
    tcgTranslationCacheMib: manifest.machine.accel === 'tcg' ? tcgCacheMib() : undefined,
  };
}
