// What each QEMU may see and be: the engine's side of confinement. Every VM
// (parent, child, branch writer) gets its run dir's VM subdir read-write, the
// snapshot files it boots or restores from, /dev/kvm only under KVM, and the
// host's network only when its egress policy lets the guest out. The argv is
// built by vmm/confine.ts; FORKD_UNCONFINED=1 turns all of it off (debugging
// on a host without bubblewrap; `forkd doctor` says so).
import { existsSync, readFileSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MissingDependencyError } from '../errors.js';
import type { ConfinementSpec, VmIdentity } from '../vmm/confine.js';
import type { Accelerator } from '../vmm/machine.js';
import type { RunDir } from './run-dir.js';
import { PROBE_UID } from './vm-uid.js';

export interface JailRequest {
  /** Paths QEMU reads: the snapshot dir it restores from, a source snapshot's layers. */
  readOnly: readonly string[];
  /** Paths besides its VM dir that QEMU writes: a snapshot being written. */
  writable?: readonly string[];
  network: 'isolated' | 'host';
  /** The RAM file a child maps privately: opened read-only (see native/qemu-preload). */
  privateRamFile?: string | undefined;
}

export function confinementEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.FORKD_UNCONFINED !== '1';
}

/** Whether forkd runs as root: only then can each VM get a uid of its own. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Whether VMs started now run as uids of their own (which the egress firewall keys on). */
export function vmUidsEnabled(): boolean {
  return confinementEnabled() && isRoot();
}

/** The LD_PRELOAD library built by `make -C native` (npm run build). */
export function preloadLibrary(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'native', 'build', 'forkd-qemu-preload.so');
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new MissingDependencyError('native/build/forkd-qemu-preload.so is missing', 'forkd-qemu-preload', {
    hint: 'build it with: npm run build (make -C native)',
  });
}

let kvmGid: number | null | undefined;

function kvmGroup(): number | null {
  if (kvmGid === undefined) {
    const line = readFileSync('/etc/group', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('kvm:'));
    const gid = Number(line?.split(':')[2]);
    kvmGid = Number.isInteger(gid) ? gid : null;
  }
  return kvmGid;
}

/** Who a jailed QEMU runs as: its uid (as its group too), and the kvm group when it needs /dev/kvm. */
function vmIdentity(uid: number | null, kvm: boolean): VmIdentity | null {
  if (uid === null) return null;
  const kvmGid = kvm ? kvmGroup() : null;
  return { uid, gid: uid, groups: kvmGid === null ? [] : [kvmGid] };
}

/** A jailed program's whole environment, before what a role adds. */
const JAIL_ENV = { PATH: '/usr/bin:/bin' } as const;

export function jailFor(runDir: RunDir, accel: Accelerator, request: JailRequest): ConfinementSpec | null {
  if (!confinementEnabled()) return null;
  const env: Record<string, string> = { ...JAIL_ENV };
  const readOnly = [...request.readOnly];
  if (request.privateRamFile) {
    const library = preloadLibrary();
    readOnly.push(library);
    env.LD_PRELOAD = library;
    env.FORKD_RAM_READONLY = request.privateRamFile;
  }
  return {
    identity: vmIdentity(runDir.uid, accel === 'kvm'),
    readOnlyPaths: readOnly,
    writablePaths: [runDir.vmDir, ...(request.writable ?? [])],
    devices: accel === 'kvm' ? ['/dev/kvm'] : [],
    network: request.network,
    env,
  };
}

/** The jail of the accelerator probe's test boot: the kernel read-only, its scratch dir, /dev/kvm. */
export function probeJail(kernelPath: string): ((scratchDir: string) => ConfinementSpec) | undefined {
  if (!confinementEnabled()) return undefined;
  return (scratchDir) => ({
    identity: vmIdentity(isRoot() ? PROBE_UID : null, true),
    readOnlyPaths: [kernelPath],
    writablePaths: [scratchDir],
    devices: ['/dev/kvm'],
    network: 'isolated',
    env: { ...JAIL_ENV },
  });
}

/** Let the VM's uid write `paths` (files the host made for it: a disk overlay, a snapshot dir being written). */
export async function grantToVm(runDir: RunDir, paths: readonly string[]): Promise<void> {
  if (runDir.uid === null) return;
  for (const path of paths) await chown(path, runDir.uid, runDir.uid);
}

/** Take back what a VM wrote into a snapshot: frozen files belong to the host, never to a VM uid. */
export async function reclaimFromVm(runDir: RunDir, paths: readonly string[]): Promise<void> {
  if (runDir.uid === null) return;
  for (const path of paths) await chown(path, 0, 0).catch(() => undefined);
}
