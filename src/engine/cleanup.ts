// `forkd cleanup`: remove what crashed or interrupted runs left behind: run
// dirs of dead VMs, snapshots stuck in "writing" with no writer, empty forkd
// cgroups. With `killRunning` it also stops held sandboxes.
import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DataDir } from '../snapshot/data-dir.js';
import type { SnapshotStore } from '../snapshot/store.js';
import { forkdCgroupParents } from './cgroups.js';
import { qemuPidsWith } from '../vmm/process.js';
import { isVmAlive, readVmRecord, type VmRecord } from './run-dir.js';
import { isProcessAlive } from '../snapshot/lock.js';
import { removeStaleUidClaims } from './vm-uid.js';
import type { EgressFirewall } from './egress-firewall.js';

export interface CleanupReport {
  killedVms: number[];
  removedRunDirs: string[];
  removedSnapshots: string[];
  /** Staging dirs of unpacks whose process died. */
  removedStaging: string[];
  removedCgroups: string[];
  /** VM uid claims whose run dir is gone (a crash between the two). */
  removedUidClaims: number[];
  runningVms: { dir: string; pid: number }[];
}

export async function cleanupDataDir(
  dataDir: DataDir,
  store: SnapshotStore,
  firewall: EgressFirewall,
  opts: { killRunning?: boolean } = {},
): Promise<CleanupReport> {
  const report: CleanupReport = {
    killedVms: [],
    removedRunDirs: [],
    removedSnapshots: [],
    removedStaging: [],
    removedCgroups: [],
    removedUidClaims: [],
    runningVms: [],
  };
  for (const name of await readdir(dataDir.runDir).catch(() => [] as string[])) {
    const dir = join(dataDir.runDir, name);
    const record = await readVmRecord(dir);
    if (record && isVmAlive(dir, record.pid) && !opts.killRunning && !isOrphan(record)) {
      report.runningVms.push({ dir, pid: record.pid });
      continue;
    }
    if (!opts.killRunning && record && record.pid === 0 && isStarting(record)) {
      continue; // a live process is starting this VM right now
    }
    // Its QEMU is found by its command line, whether vm.json has its pid or
    // its starter died inside the jail's start-up before it could be written.
    for (const pid of qemuPidsWith(dir + '/')) {
      try {
        process.kill(pid, 'SIGKILL');
        report.killedVms.push(pid);
      } catch {
        // exited meanwhile
      }
      await waitGone(dir, pid);
    }
    await rm(dir, { recursive: true, force: true });
    report.removedRunDirs.push(dir);
  }
  for (const record of await store.abandoned()) {
    await rm(record.dir, { recursive: true, force: true });
    report.removedSnapshots.push(record.tag);
  }
  for (const dir of await store.abandonedStaging()) {
    await rm(dir, { recursive: true, force: true });
    report.removedStaging.push(dir);
  }
  // A dead VM's run dir is gone now; its uid is freed once the firewall has forgotten it.
  report.removedUidClaims = await removeStaleUidClaims(dataDir, (uid) => firewall.forget(uid));
  for (const parent of await forkdCgroupParents()) {
    for (const name of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
      if (!name.isDirectory()) continue;
      // rmdir fails while processes remain: that is the check that it is unused.
      const removed = await rmdir(join(parent, name.name)).then(
        () => true,
        () => false,
      );
      if (removed && !report.removedCgroups.includes(name.name)) report.removedCgroups.push(name.name);
    }
  }
  return report;
}

/** A VM whose starting process is still alive (and is not this one). */
function isStarting(record: VmRecord): boolean {
  return record.ownerPid !== undefined && record.ownerPid !== process.pid && isProcessAlive(record.ownerPid);
}

/** A parent being booted or a branch writer whose forkd process is gone: nothing will ever finish it. */
function isOrphan(record: VmRecord): boolean {
  if (record.role !== 'writer' && record.role !== 'parent') return false;
  return record.ownerPid !== undefined && record.ownerPid !== process.pid && !isProcessAlive(record.ownerPid);
}

async function waitGone(dir: string, pid: number): Promise<void> {
  for (let i = 0; i < 200 && isVmAlive(dir, pid); i++) await new Promise((r) => setTimeout(r, 10));
}
