// Host checks for `forkd doctor`: everything forkd needs, each with a status
// and, when not passing, a hint that says how to fix it.
import { run } from '../util/run.js';
import { confinementEnabled, isRoot } from './jail.js';
import { constants } from 'node:fs';
import { access, mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listKernelsForDoctor } from './doctor-kernel.js';
import { detectCgroups } from './cgroups.js';
import type { Engine } from './engine.js';
import { errorMessage } from '../errors.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface DoctorCheck {
  name: string;
  status: CheckStatus;
  detail: string;
  hint?: string;
}

async function which(program: string): Promise<boolean> {
  return run(['sh', '-c', 'command -v "$1"', 'sh', program]).then(
    () => true,
    () => false,
  );
}

export async function runDoctor(engine: Engine): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const add = (c: DoctorCheck) => checks.push(c);
  const apt = (pkg: string) => `apt-get install -y ${pkg} (or bash scripts/setup.sh)`;

  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  add(
    major > 20 || (major === 20 && minor >= 9)
      ? { name: 'node', status: 'pass', detail: `Node ${process.versions.node}` }
      : {
          name: 'node',
          status: 'fail',
          detail: `Node ${process.versions.node}`,
          hint: 'install Node 20.9 or newer',
        },
  );

  let qemuOk = false;
  try {
    const qemu = await engine.qemu();
    qemuOk = true;
    add({ name: 'qemu', status: 'pass', detail: qemu.versionLine });
    const { stdout } = await run([qemu.binary, '-machine', 'help']);
    add(
      /\bmicrovm\b/.test(stdout)
        ? { name: 'microvm machine', status: 'pass', detail: 'supported' }
        : {
            name: 'microvm machine',
            status: 'fail',
            detail: 'this QEMU has no microvm machine',
            hint: apt('qemu-system-x86'),
          },
    );
  } catch (err) {
    add({ name: 'qemu', status: 'fail', detail: errorMessage(err), hint: apt('qemu-system-x86') });
  }
  for (const [program, pkg, level, why] of [
    ['qemu-img', 'qemu-utils', 'fail', 'disk overlays'],
    ['mmdebstrap', 'mmdebstrap', 'warn', 'building rootfs images (python-numpy)'],
    ['mkfs.ext4', 'e2fsprogs', 'warn', 'building rootfs images'],
    ['busybox', 'busybox-static', 'fail', 'building initramfs images'],
    ['zstd', 'zstd', 'warn', 'snapshot packs'],
    ['cpio', 'cpio', 'warn', 'initramfs tooling'],
    ['bwrap', 'bubblewrap', 'fail', 'confining QEMU (its own namespaces and view of the filesystem)'],
    ['setpriv', 'util-linux', 'fail', 'running QEMU as a uid of its own with no capabilities'],
    ['nft', 'nftables', 'warn', 'the internet and allow: egress policies (the uid firewall)'],
  ] as const) {
    add(
      (await which(program))
        ? { name: program, status: 'pass', detail: `found (${why})` }
        : { name: program, status: level, detail: `not found: needed for ${why}`, hint: apt(pkg) },
    );
  }

  add(
    confinementEnabled()
      ? {
          name: 'confinement',
          status: 'pass',
          detail: isRoot()
            ? 'on: each QEMU in bubblewrap as a uid of its own, no capabilities, seccomp'
            : 'on: each QEMU in bubblewrap (user namespace, your uid), no capabilities, seccomp',
        }
      : {
          name: 'confinement',
          status: 'warn',
          detail: 'off (FORKD_UNCONFINED=1): QEMU runs with all of forkd’s privileges',
          hint: 'unset FORKD_UNCONFINED',
        },
  );

  const kvmAccess = await access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => true,
    () => false,
  );
  add(
    kvmAccess
      ? { name: '/dev/kvm', status: 'pass', detail: 'present and accessible' }
      : {
          name: '/dev/kvm',
          status: 'warn',
          detail: 'missing or not accessible: VMs run under TCG (slower)',
          hint: 'enable virtualisation, or add your user to the kvm group',
        },
  );
  const kernel = (await listKernelsForDoctor(engine.dataDir.root))[0];
  if (!qemuOk) {
    add({ name: 'accelerator', status: 'fail', detail: 'no QEMU to probe with' });
  } else if (!kernel) {
    add({
      name: 'accelerator',
      status: 'warn',
      detail: 'not probed yet: no guest kernel downloaded',
      hint: 'run `forkd image build tiny`, then `forkd doctor` again',
    });
  } else {
    const probe = await engine.accelerator(kernel);
    add({
      name: 'accelerator',
      status: probe.accel === 'kvm' ? 'pass' : 'warn',
      detail: `${probe.accel}: ${probe.reason}`,
      hint: probe.accel === 'kvm' ? undefined : 'TCG works, just slower; --accel kvm forces KVM',
    });
  }

  const cgroups = await detectCgroups();
  add(
    cgroups
      ? {
          name: 'cgroups',
          status: 'pass',
          detail: `${cgroups.version}: ${Object.keys(cgroups.roots).join(', ')} (memory, CPU, pids and I/O quotas)`,
        }
      : {
          name: 'cgroups',
          status: 'warn',
          detail: 'none mounted: sandbox quotas and usage are unavailable',
          hint: 'mount cgroup v2 at /sys/fs/cgroup',
        },
  );

  try {
    await mkdir(engine.dataDir.root, { recursive: true });
    await access(engine.dataDir.root, constants.W_OK);
    const fs = await statfs(engine.dataDir.root);
    const freeGiB = (fs.bavail * fs.bsize) / 2 ** 30;
    add(
      freeGiB >= 5
        ? {
            name: 'data dir',
            status: 'pass',
            detail: `${engine.dataDir.root} (${freeGiB.toFixed(0)} GiB free)`,
          }
        : {
            name: 'data dir',
            status: 'warn',
            detail: `${engine.dataDir.root} has only ${freeGiB.toFixed(1)} GiB free`,
            hint: 'free space or use --data-dir elsewhere',
          },
    );
    add(
      (await supportsReflinks(engine.dataDir.root))
        ? {
            name: 'reflinks',
            status: 'pass',
            detail: 'the data dir clones files (RAM files of diff chains copy in ms)',
          }
        : {
            name: 'reflinks',
            status: 'warn',
            detail:
              'the data dir cannot clone files: rebuilding a RAM file from a diff is a sparse copy (about 0.5 s per 512 MiB)',
            hint: 'XFS (mkfs.xfs -m reflink=1) or btrfs under the data dir makes them clones',
          },
    );
  } catch (err) {
    add({
      name: 'data dir',
      status: 'fail',
      detail: `${engine.dataDir.root}: ${errorMessage(err)}`,
      hint: 'use --data-dir (or FORKD_DATA_DIR) to pick a writable directory',
    });
  }
  return checks;
}

/** Whether `dir`'s file system clones files (FICLONE), tried on a scratch file. */
async function supportsReflinks(dir: string): Promise<boolean> {
  const probe = join(dir, `.reflink-probe-${process.pid}`);
  try {
    await writeFile(probe, 'forkd');
    return await run(['cp', '--reflink=always', probe, `${probe}.clone`]).then(
      () => true,
      () => false,
    );
  } finally {
    await rm(probe, { force: true });
    await rm(`${probe}.clone`, { force: true });
  }
}
