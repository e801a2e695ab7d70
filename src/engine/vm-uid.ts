// Every confined QEMU runs as a uid of its own, taken from a range no user
// owns (as Firecracker's jailer does): two VMs then share no files, signals
// or firewall rules even if both QEMUs were taken over. A uid is claimed by
// creating <data-dir>/vm-uids/<uid> exclusively (it names the run dir that
// holds it) and freed with the run dir, after its firewall entries are gone.
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

function claimsDir(dataDir: DataDir): string {
  return join(dataDir.root, 'vm-uids');
}

/** Claim a free uid for the VM whose run dir is `runDirId`. */
export async function claimVmUid(dataDir: DataDir, runDirId: string): Promise<number> {
  const dir = claimsDir(dataDir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  for (let attempt = 0; attempt < 64; attempt++) {
    const uid = randomInt(VM_UID_RANGE[0], PROBE_UID); // upper bound exclusive: PROBE_UID stays free
    const path = join(dir, String(uid));
    try {
      await writeFile(path, runDirId, { flag: 'wx', mode: 0o600 });
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

/** Free `uid` if `runDirId` holds it. */
export async function releaseVmUid(dataDir: DataDir, uid: number, runDirId: string): Promise<void> {
  const path = join(claimsDir(dataDir), String(uid));
  if ((await readFile(path, 'utf8').catch(() => '')) === runDirId) await unlink(path).catch(() => undefined);
}

/**
 * Remove claims whose run dir no longer exists (`forkd cleanup`), each only
 * once `beforeFree` (taking it out of the firewall) succeeded; returns the uids freed.
 */
export async function removeStaleUidClaims(
  dataDir: DataDir,
  beforeFree: (uid: number) => Promise<void>,
): Promise<number[]> {
  const freed: number[] = [];
  const dir = claimsDir(dataDir);
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const holder = await readFile(join(dir, name), 'utf8').catch(() => '');
    if (holder && (await pathExists(dataDir.vmRunDir(holder)))) continue;
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
  return freed;
}
