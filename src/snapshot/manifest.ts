// snapshot.json: what a snapshot is and what it needs to be restored. Written
// atomically (temp + rename) so a reader never sees half a manifest; a
// snapshot whose status is not "ready" is never restored.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { CorruptError } from '../errors.js';
import type { MachineShape } from '../vmm/machine.js';

export const MANIFEST_FILE = 'snapshot.json';
export const MANIFEST_FORMAT_VERSION = 1;

export type SnapshotStatus = 'writing' | 'ready' | 'failed';

/** Files inside a snapshot dir, by role. Paths are relative to the snapshot dir. */
export const SNAPSHOT_FILES = {
  memory: 'memory',
  vmstate: 'vmstate',
  kernel: 'vmlinux',
  initrd: 'initrd.img',
  disk: 'disk.qcow2',
  rootfs: 'rootfs.ext4',
  bootLog: 'boot.log',
  /** A diff link's RAM pages that differ from its parent's (memory-diff.ts). */
  memoryDiff: 'memory.diff',
  /** A diff link's disk clusters written since its parent: a qcow2 layer over the parent's layer. */
  diskDiff: 'disk.diff.qcow2',
} as const;

export interface RuntimeDescription {
  kind: string;
  imports?: string[];
}

export interface SnapshotManifest {
  formatVersion: number;
  tag: string;
  status: SnapshotStatus;
  createdAt: string;
  forkdVersion: string;
  qemu: { version: string; versionLine: string };
  machine: MachineShape;
  /** Why the accelerator was chosen (probe result or override). */
  accelReason: string;
  kernel: { version: string; sha256: string; cmdline: string };
  initrd: { sha256: string };
  image: { recipe: string; contentHash: string };
  /** The frozen disk layer children overlay; null for diskless images. */
  disk: { layer: string; base: string } | null;
  memory: { file: string; logicalBytes: number; physicalBytes: number };
  vmstate: { file: string; bytes: number; sha256: string };
  runtime: RuntimeDescription | null;
  timings: { bootToReadyMs: number; freezeMs: number; totalMs: number };
  branchedFrom?: string;
  /** For a live branch of a running sandbox: where it came from and what it cost. */
  branch?: { sandboxId: string; depth: number; pauseMs: number; migrateMs: number; finishMs: number };
  /**
   * This snapshot's identity across data dirs and hubs: sha256 over its
   * files' sha256s (content-hash.ts). Computed once, when first needed.
   */
  contentHash?: string;
  /** A diff link: the snapshot it is a diff of, by tag and content hash. */
  parent?: { tag: string; contentHash: string };
  /**
   * What changed since the parent, as files beside the flat ones (children
   * always restore from the flat files, so depth costs nothing at fork).
   */
  diff?: SnapshotDiff;
  warning?: string;
}

export interface SnapshotDiff {
  memory: { file: string; pages: number; logicalBytes: number; physicalBytes: number };
  /** Null for diskless snapshots. */
  disk: { file: string; logicalBytes: number; physicalBytes: number } | null;
  /** Time spent computing the diff. */
  ms: number;
}

/** What a diff link's diff files hold (RAM and disk together), or null for a self-contained snapshot. */
export function diffSizes(
  m: Pick<SnapshotManifest, 'diff'>,
): { logicalBytes: number; physicalBytes: number } | null {
  if (!m.diff) return null;
  const disk = m.diff.disk;
  return {
    logicalBytes: m.diff.memory.logicalBytes + (disk?.logicalBytes ?? 0),
    physicalBytes: m.diff.memory.physicalBytes + (disk?.physicalBytes ?? 0),
  };
}

/** When the snapshot was created, in unix seconds (the wire format's unit). */
export function createdAtUnix(manifest: Pick<SnapshotManifest, 'createdAt'>): number {
  return Math.floor(Date.parse(manifest.createdAt) / 1000);
}

export async function writeManifest(dir: string, manifest: SnapshotManifest): Promise<void> {
  const target = join(dir, MANIFEST_FILE);
  const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(temp, JSON.stringify(manifest, null, 2) + '\n');
  await rename(temp, target);
}

export async function readManifest(dir: string): Promise<SnapshotManifest> {
  const path = join(dir, MANIFEST_FILE);
  const text = await readFile(path, 'utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new CorruptError(`snapshot manifest ${path} is not valid JSON`, path, {
      hint: 'remove the snapshot (forkd rmi) and create it again',
    });
  }
  return checkManifest(value, path);
}

function checkManifest(value: unknown, path: string): SnapshotManifest {
  const m = value as Partial<SnapshotManifest> | null;
  const ok =
    m !== null &&
    typeof m === 'object' &&
    typeof m.tag === 'string' &&
    typeof m.status === 'string' &&
    typeof m.formatVersion === 'number' &&
    typeof m.qemu?.version === 'string' &&
    typeof m.machine?.machineType === 'string' &&
    typeof m.vmstate?.file === 'string' &&
    typeof m.memory?.file === 'string';
  if (!ok) {
    throw new CorruptError(`snapshot manifest ${path} is missing required fields`, path, {
      hint: 'remove the snapshot (forkd rmi) and create it again',
    });
  }
  if ((m.formatVersion ?? 0) > MANIFEST_FORMAT_VERSION) {
    throw new CorruptError(
      `snapshot manifest ${path} has format ${m.formatVersion}; this forkd reads up to ${MANIFEST_FORMAT_VERSION}`,
      path,
      { hint: 'upgrade forkd' },
    );
  }
  return m as SnapshotManifest;
}
