// Builds the machine description for a snapshot's parent, children and
// writers from one place, so the device layout can never drift between them.
import { join } from 'node:path';
import { SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import type { MachineDescription, MachineRole, NetworkConfig } from '../vmm/machine.js';
import type { RunDir } from './run-dir.js';

/** TCG's default translation cache is 1 GiB per VM; children run little new code. */
export const DEFAULT_TCG_CACHE_MIB = 32;

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
    tcgTranslationCacheMib: manifest.machine.accel === 'tcg' ? DEFAULT_TCG_CACHE_MIB : undefined,
  };
}
