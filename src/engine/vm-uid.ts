// Every confined QEMU runs as a uid of its own, taken from a range no user
// owns (as Firecracker's jailer does): two VMs then share no files, signals
// or firewall rules even if both QEMUs were taken over. A uid is claimed by
// creating /run/forkd/vm-uids/<uid> exclusively (it names the run dir that
// holds it) and freed with the run dir, after its firewall entries are gone.
// The claims are host-wide, like the uids and the firewall: two data dirs
// (two daemons, a daemon and a CLI fork) must never hand out the same uid.
// A claim is never taken over here: a uid whose VM died unseen may still have
// firewall entries, and only `forkd cleanup` (which reads the VM's record and
// revokes them) frees it.
import { randomInt } from 'node:crypto';
import { mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ResourceExhaustedError } from '../errors.js';
import { pathExists } from '../util/files.js';
import type { DataDir } from '../snapshot/data-dir.js';

/** Inclusive; 2^24 uids from 0x70000000, far above any user or subordinate-id range. */
export const VM_UID_RANGE: readonly [number, number] = [0x7000_0000, 0x7000_0000 + 2 ** 24 - 1];

/** The last uid of the range, never claimed: the accelerator probe's test boot (no guest code). */
export const PROBE_UID = VM_UID_RANGE[1];

/** Where uid claims live: one directory for the host (a tmpfs, so a reboot frees them with the VMs). */
export function vmUidClaimsDir(): string {
  return process.env.FORKD_VM_UID_DIR ?? '/run/forkd/vm-uids';
}

/** Where forkd before host-wide claims kept them; still read so no uid of a VM it started is handed out. */
function legacyClaimsDir(dataDir: DataDir): string {
  return join(dataDir.root, 'vm-uids');
}

/** Claim a free uid for the VM whose run dir is `runDirId`. */
export async function claimVmUid(dataDir: DataDir, runDirId: string): Promise<number> {
  const dir = vmUidClaimsDir();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const holder = dataDir.vmRunDir(runDirId);
  for (let attempt = 0; attempt < 64; attempt++) {
    const uid = randomInt(VM_UID_RANGE[0], PROBE_UID); // upper bound exclusive: PROBE_UID stays free
    const path = join(dir, String(uid));
    if (await pathExists(join(legacyClaimsDir(dataDir), String(uid)))) continue;
    try {
      await writeFile(path, holder, { flag: 'wx', mode: 0o600 });
      return uid;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // Taken, or left by a crash: try another of the 2^24.
    }
  }
  throw new ResourceExhaustedError('no free VM uid found after 64 tries', {
    hint: `remove stale claims with forkd cleanup (${dir})`,
  });
}

/** Free `uid` if the run dir `runDirId` holds it. */
export async function releaseVmUid(dataDir: DataDir, uid: number, runDirId: string): Promise<void> {
  const holder = dataDir.vmRunDir(runDirId);
  for (const [dir, name] of [
    [vmUidClaimsDir(), holder],
    [legacyClaimsDir(dataDir), runDirId],
  ] as const) {
    const path = join(dir, String(uid));
    if ((await readFile(path, 'utf8').catch(() => '')) === name) await unlink(path).catch(() => undefined);
  }
}

/**
 * Remove claims whose run dir no longer exists (`forkd cleanup`), host-wide
 * and in this data dir's legacy directory, each only once `beforeFree`
 * (taking it out of the firewall) succeeded; returns the uids freed.
 */
export async function removeStaleUidClaims(
  dataDir: DataDir,
  beforeFree: (uid: number) => Promise<void>,
): Promise<number[]> {
  const freed: number[] = [];
  const dirs = [
    { dir: vmUidClaimsDir(), runDirOf: (holder: string) => holder },
    { dir: legacyClaimsDir(dataDir), runDirOf: (holder: string) => dataDir.vmRunDir(holder) },
  ];
  for (const { dir, runDirOf } of dirs) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const holder = await readFile(join(dir, name), 'utf8').catch(() => '');
      // A claim being written (empty), or held by a run dir that exists in any data dir, stays.
      if (!holder || (await pathExists(runDirOf(holder)))) continue;
      if (
        !(await beforeFree(Number(name)).then(
          () => true,
          () => false,
        ))
      )
        continue;
      await unlink(join(dir, name)).catch(() => undefined);
      freed.push(Number(name));
    }
  }
  return freed;
}
