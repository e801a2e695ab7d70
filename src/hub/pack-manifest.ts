// The pack manifest: the first entry of every .forkd.tar.zst. It says what the
// pack holds (every file with its size and sha256), what machine can restore
// it, and, for diff-snapshot chains, which ancestor layers come with it. One
// schema drives validation of untrusted packs and the TypeScript types.
import Type, { type Static } from 'typebox';
import { Value } from 'typebox/value';
import { CorruptError, IncompatibleError } from '../errors.js';
import { TAG_PATTERN } from '../snapshot/tag.js';
import { MANIFEST_FILE, SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';

export const PACK_FORMAT = 'forkd-pack';
export const PACK_FORMAT_VERSION = 1;
export const PACK_MANIFEST_ENTRY = 'forkd-pack.json';
export const PACK_EXTENSION = '.forkd.tar.zst';
/** A manifest bigger than this is not a manifest. */
export const PACK_MANIFEST_MAX_BYTES = 1 << 20;

/** Names of files inside a snapshot dir: flat, no dot-dot, no slash. */
const FILE_NAME = '^[a-z0-9][a-z0-9._-]{0,63}$';
const SHA256 = '^[0-9a-f]{64}$';

export const PackFile = Type.Object({
  path: Type.String({ pattern: FILE_NAME }),
  size: Type.Integer({ minimum: 0 }),
  sha256: Type.String({ pattern: SHA256 }),
  /** Bytes the pack stores for it (data blocks only); what unpacking writes to disk. */
  stored_bytes: Type.Integer({ minimum: 0 }),
});
export type PackFile = Static<typeof PackFile>;

/**
 * An ancestor layer of a diff-snapshot chain, root first. Its files sit under
 * `chain/<index>/` in the archive. Empty until diff chains exist.
 */
export const PackChainLink = Type.Object({
  tag: Type.String({ pattern: TAG_PATTERN.source }),
  files: Type.Array(PackFile),
});
export type PackChainLink = Static<typeof PackChainLink>;

export const PackMachine = Type.Object({
  qemu_version: Type.String(),
  machine_type: Type.String(),
  cpu_model: Type.String(),
  accel: Type.String(),
  memory_mib: Type.Integer({ minimum: 1 }),
  vcpus: Type.Integer({ minimum: 1 }),
});

export const PackManifest = Type.Object({
  format: Type.Literal(PACK_FORMAT),
  format_version: Type.Integer({ minimum: 1 }),
  tag: Type.String(),
  description: Type.String({ maxLength: 4096 }),
  created_at: Type.String(),
  forkd_version: Type.String(),
  machine: PackMachine,
  base_image: Type.Object({ recipe: Type.String(), content_hash: Type.String(), kernel: Type.String() }),
  files: Type.Array(PackFile, { minItems: 1 }),
  chain: Type.Array(PackChainLink),
  compression: Type.Object({ codec: Type.Literal('zstd'), window_log: Type.Integer() }),
});
export type PackManifest = Static<typeof PackManifest>;

/** Every file a pack may hold: a snapshot dir's files, nothing else. */
const KNOWN_FILES = new Set<string>([MANIFEST_FILE, ...Object.values(SNAPSHOT_FILES)]);

/**
 * The most each file of a pack may claim (logical bytes, holes included): what
 * the file can really be. The RAM file is pinned to the declared memory
 * instead, and disk images to the unpack limit's maxFileBytes.
 */
export const PACK_FILE_LIMITS: Readonly<Record<string, number>> = {
  [MANIFEST_FILE]: 1 << 20,
  [SNAPSHOT_FILES.vmstate]: 16 << 20,
  [SNAPSHOT_FILES.kernel]: 256 << 20,
  [SNAPSHOT_FILES.initrd]: 2 ** 30,
  [SNAPSHOT_FILES.bootLog]: 16 << 20,
};

const REQUIRED_FILES = [
  MANIFEST_FILE,
  SNAPSHOT_FILES.memory,
  SNAPSHOT_FILES.vmstate,
  SNAPSHOT_FILES.kernel,
  SNAPSHOT_FILES.initrd,
];

/**
 * Checks an untrusted manifest. The format and version come first so that a
 * pack from a newer forkd says "upgrade" rather than "malformed".
 */
export function parsePackManifest(value: unknown, source: string): PackManifest {
  const head = value as { format?: unknown; format_version?: unknown } | null;
  if (typeof head !== 'object' || head === null || head.format !== PACK_FORMAT) {
    throw new CorruptError(`${source} is not a forkd pack (unknown format)`, source, {
      hint: 'packs are made by `forkd pack`',
    });
  }
  if (typeof head.format_version !== 'number' || head.format_version > PACK_FORMAT_VERSION) {
    throw new IncompatibleError(
      `${source} has pack format ${String(head.format_version)}; this forkd reads format ${PACK_FORMAT_VERSION}`,
      String(head.format_version),
      String(PACK_FORMAT_VERSION),
      { hint: 'upgrade forkd' },
    );
  }
  const problem = Value.Errors(PackManifest, value)[0];
  if (problem) {
    throw new CorruptError(
      `${source} has a malformed manifest: ${problem.instancePath || '/'} ${problem.message}`,
      source,
    );
  }
  const manifest = value as PackManifest;
  if (!TAG_PATTERN.test(manifest.tag)) {
    throw new CorruptError(
      `${source} names an unsafe tag ${JSON.stringify(manifest.tag.slice(0, 80))}`,
      source,
      {
        hint: 'tags are 1-64 characters from A-Z a-z 0-9 _ -',
      },
    );
  }
  const names = new Set<string>();
  for (const file of manifest.files) {
    if (names.has(file.path)) throw new CorruptError(`${source} lists ${file.path} twice`, source);
    if (!KNOWN_FILES.has(file.path)) {
      throw new CorruptError(`${source} lists ${file.path}, which is not a snapshot file`, source);
    }
    if (file.stored_bytes > file.size) {
      throw new CorruptError(`${source} says ${file.path} stores more bytes than it has`, source);
    }
    const limit = PACK_FILE_LIMITS[file.path];
    if (limit !== undefined && file.size > limit) {
      throw new CorruptError(
        `${source} says ${file.path} is ${file.size} bytes; a ${file.path} is at most ${limit}`,
        source,
      );
    }
    names.add(file.path);
  }
  for (const required of REQUIRED_FILES) {
    if (!names.has(required)) throw new CorruptError(`${source} lacks ${required}`, source);
  }
  const memory = manifest.files.find((f) => f.path === SNAPSHOT_FILES.memory);
  if (memory && memory.size !== manifest.machine.memory_mib * 2 ** 20) {
    throw new CorruptError(
      `${source} says its RAM file is ${memory.size} bytes for ${manifest.machine.memory_mib} MiB`,
      source,
    );
  }
  if (manifest.chain.length > 0) {
    throw new IncompatibleError(
      `${source} is a diff-snapshot chain of ${manifest.chain.length + 1} layers; this forkd unpacks single snapshots`,
      `chain of ${manifest.chain.length + 1}`,
      'single snapshot',
      { hint: 'upgrade forkd' },
    );
  }
  return manifest;
}

/** What a pack's snapshot.json may say: everything that becomes a path or a QEMU argument is pinned. */
const PackedSnapshotManifest = Type.Object({
  formatVersion: Type.Integer({ minimum: 1 }),
  tag: Type.String({ pattern: TAG_PATTERN.source }),
  status: Type.Literal('ready'),
  qemu: Type.Object({ version: Type.String(), versionLine: Type.String() }),
  machine: Type.Object({
    machineType: Type.Literal('microvm'),
    accel: Type.Union([Type.Literal('tcg'), Type.Literal('kvm')]),
    cpuModel: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
    vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
    memoryMib: Type.Integer({ minimum: 16, maximum: 1 << 20 }),
    hasDisk: Type.Boolean(),
    hasNetwork: Type.Boolean(),
  }),
  kernel: Type.Object({
    version: Type.String(),
    sha256: Type.String({ pattern: SHA256 }),
    cmdline: Type.String({ pattern: '^[\\x20-\\x7e]{0,4096}$' }),
  }),
  disk: Type.Union([
    Type.Null(),
    Type.Object({ layer: Type.Literal(SNAPSHOT_FILES.disk), base: Type.Literal(SNAPSHOT_FILES.rootfs) }),
  ]),
  memory: Type.Object({ file: Type.Literal(SNAPSHOT_FILES.memory), logicalBytes: Type.Integer() }),
  vmstate: Type.Object({
    file: Type.Literal(SNAPSHOT_FILES.vmstate),
    sha256: Type.String({ pattern: SHA256 }),
  }),
});

/** Checks a packed snapshot.json against the pack manifest it came with. */
export function checkPackedSnapshot(value: unknown, pack: PackManifest, source: string): SnapshotManifest {
  const problem = Value.Errors(PackedSnapshotManifest, value)[0];
  if (problem) {
    throw new CorruptError(
      `${source}: its ${MANIFEST_FILE} is malformed: ${problem.instancePath || '/'} ${problem.message}`,
      source,
    );
  }
  const snapshot = value as SnapshotManifest;
  const sizeOf = (name: string) => pack.files.find((f) => f.path === name)?.size;
  const mismatch =
    sizeOf(SNAPSHOT_FILES.memory) !== snapshot.machine.memoryMib * 1024 * 1024 ||
    snapshot.memory.logicalBytes !== snapshot.machine.memoryMib * 1024 * 1024 ||
    snapshot.qemu.version !== pack.machine.qemu_version ||
    snapshot.machine.machineType !== pack.machine.machine_type ||
    snapshot.machine.hasDisk !== (snapshot.disk !== null) ||
    (snapshot.disk !== null &&
      (sizeOf(SNAPSHOT_FILES.disk) === undefined || sizeOf(SNAPSHOT_FILES.rootfs) === undefined));
  if (mismatch) {
    throw new CorruptError(`${source}: its ${MANIFEST_FILE} disagrees with the pack manifest`, source);
  }
  return snapshot;
}
