// A live VM's runtime directory (sockets, logs, disk overlay). Created with
// the VM and removed with it on every path; ids are short and random so
// socket paths stay under the unix limit and cannot be guessed.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { claimVmUid, releaseVmUid } from './vm-uid.js';
import { vmUidsEnabled } from './jail.js';
import { onProcessExit } from '../util/cleanup.js';
import { isQemuAlive } from '../vmm/process.js';
import type { SandboxInfo } from './sandbox.js';
import { join } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import type { DataDir } from '../snapshot/data-dir.js';
import type { MachinePaths } from '../vmm/machine.js';

/** sun_path is 108 bytes including the NUL. */
const MAX_SOCKET_PATH = 107;

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function randomId(prefix: string, length = 12): string {
  const bytes = randomBytes(length);
  let id = '';
  for (const b of bytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  return `${prefix}-${id}`;
}

export interface RunDir {
  id: string;
  dir: string;
  /**
   * The uid its QEMU runs as (root hosts), or null (QEMU keeps the caller's
   * uid). The run dir itself stays root-owned, so a taken-over QEMU cannot
   * rewrite vm.json (which a restarted daemon trusts); QEMU writes only in
   * `vmDir`, which this uid owns.
   */
  uid: number | null;
  /** Where QEMU creates its sockets, console log and disk overlays. */
  vmDir: string;
  paths: Omit<MachinePaths, 'ramFile' | 'diskOverlay'> & { diskOverlay: string; qemuLog: string };
  remove(): Promise<void>;
  /** Keep the dir when this process exits (its VM is handed to a later process). */
  keepOnExit(): void;
}

/** The subdirectory of a run dir that its QEMU may write. */
export const VM_SUBDIR = 'q';

export function runDirPaths(dir: string): RunDir['paths'] {
  const vmDir = join(dir, VM_SUBDIR);
  return {
    qmpSocket: join(vmDir, 'qmp.sock'),
    agentSocket: join(vmDir, 'agent.sock'),
    consoleLog: join(vmDir, 'console.log'),
    qemuLog: join(dir, 'qemu.log'),
    diskOverlay: join(vmDir, 'disk.qcow2'),
  };
}

export async function createRunDir(dataDir: DataDir, id: string): Promise<RunDir> {
  const dir = dataDir.vmRunDir(id);
  const paths = runDirPaths(dir);
  if (Buffer.byteLength(paths.agentSocket) > MAX_SOCKET_PATH) {
    throw new InvalidArgumentError(`data dir ${dataDir.root} is too long for unix socket paths`, 'data-dir', {
      hint: 'use a shorter --data-dir (socket paths must stay under 108 bytes)',
    });
  }
  await mkdir(dir, { recursive: true, mode: 0o711 });
  const vmDir = join(dir, VM_SUBDIR);
  await mkdir(vmDir, { mode: 0o700 });
  // Unconfined (FORKD_UNCONFINED=1) QEMU keeps forkd's uid: claiming one would only pretend.
  const uid = vmUidsEnabled() ? await claimVmUid(dataDir, id) : null;
  if (uid !== null) await chown(vmDir, uid, uid);
  // Interrupted (SIGINT, SIGTERM, crash): the VM is killed by its own exit
  // hook; this one removes its sockets, logs and overlay.
  const forget = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  return {
    id,
    dir,
    uid,
    vmDir,
    paths,
    remove: async () => {
      forget();
      await rm(dir, { recursive: true, force: true });
      if (uid !== null) await releaseVmUid(dataDir, uid, id);
    },
    keepOnExit: forget,
  };
}

/** The run dir of a VM started by an earlier process; it outlives this one unless removed. */
export function existingRunDir(dataDir: DataDir, id: string, uid: number | null): RunDir {
  const dir = dataDir.vmRunDir(id);
  return {
    id,
    dir,
    uid,
    vmDir: join(dir, VM_SUBDIR),
    paths: runDirPaths(dir),
    remove: async () => {
      await rm(dir, { recursive: true, force: true });
      if (uid !== null) await releaseVmUid(dataDir, uid, id);
    },
    keepOnExit: () => undefined,
  };
}

/** What a run dir says about its VM, so a later process (cleanup, a restarted daemon) can find it. */
export interface VmRecord {
  pid: number;
  role: string;
  startedAt: string;
  /**
   * The forkd process that started it. A parent or writer VM never outlives
   * it on purpose: if the owner died, cleanup stops the VM.
   */
  ownerPid?: number;
  /** Set once a child is handed out: what a later process needs to re-attach. */
  sandbox?: SandboxInfo;
  /** The uid its QEMU runs as (null: the launching user's). */
  uid?: number | null;
}

export const VM_RECORD_FILE = 'vm.json';

export async function writeVmRecord(runDir: RunDir, record: VmRecord): Promise<void> {
  await writeFile(join(runDir.dir, VM_RECORD_FILE), JSON.stringify({ ...record, uid: runDir.uid }) + '\n');
}

export async function readVmRecord(dir: string): Promise<VmRecord | null> {
  try {
    return JSON.parse(await readFile(join(dir, VM_RECORD_FILE), 'utf8')) as VmRecord;
  } catch {
    return null;
  }
}

/** Whether `pid` is a live QEMU serving this run dir (guards against pid reuse). */
export function isVmAlive(dir: string, pid: number): boolean {
  return isQemuAlive(pid, dir + '/');
}
