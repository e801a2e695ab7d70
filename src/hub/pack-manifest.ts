// The pack manifest: the first entry of every .forkd.tar.zst. It says what the
// pack holds (every file with its size and sha256), what machine can restore
// it, and, for a diff pack, which ancestors (by tag and content hash) it must
// be installed over, or carries them (`--with-ancestors`: each ancestor's
// files under `chain/<index>/`). One schema drives validation of untrusted
// packs and the TypeScript types.
import Type, { type Static } from 'typebox';
import { Value } from 'typebox/value';
import { CorruptError, IncompatibleError } from '../errors.js';
import { TAG_PATTERN } from '../snapshot/tag.js';
import { MANIFEST_FILE, SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import { selfContainedContentHash } from '../snapshot/content-hash.js';

export const PACK_FORMAT = 'forkd-pack';
/** The newest format this forkd reads. */
export const PACK_FORMAT_VERSION = 2;
/**
 * A full pack is written as format 1, which every forkd reads. A diff pack
 * is format 2, so that a forkd without diff packs says "upgrade" instead of
 * "lacks memory".
 */
export const PACK_FULL_FORMAT_VERSION = 1;
export const PACK_DIFF_FORMAT_VERSION = 2;
export const PACK_MANIFEST_ENTRY = 'forkd-pack.json';
export const PACK_EXTENSION = '.forkd.tar.zst';
/** A manifest bigger than this is not a manifest. */
export const PACK_MANIFEST_MAX_BYTES = 1 << 20;

/** The most ancestors a pack may name (chains are a few links deep; the limit bounds the checks). */
export const MAX_PACK_CHAIN = 64;

/** Names of files inside a snapshot dir: flat, no dot-dot, no slash. */
const FILE_NAME = '^[a-z0-9][a-z0-9._-]{0,63}$';
const SHA256 = '^[0-9a-f]{64}$';

export const PackFile = Type.Object({
  path: Type.String({ pattern: FILE_NAME }),
  size: Type.Integer({ minimum: 0 }),
  sha256: Type.String({ pattern: SHA256 }),
  /** Bytes the pack stores for it (data blocks only); what unpacking writes to disk. */
  stored_bytes: Type.Integer({ minimum: 0 }),
  /**
   * In a diff pack: this file is a diff against the parent's file of that
   * name (memory.diff of `memory`, disk.diff.qcow2 of `disk.qcow2`), from
   * which unpacking rebuilds the flat file.
   */
  diff_of: Type.Optional(Type.String({ pattern: FILE_NAME })),
});
export type PackFile = Static<typeof PackFile>;

/**
 * An ancestor of a diff pack's snapshot, root first, the direct parent last:
 * matched to a local snapshot by tag and content hash. `files` is empty when
 * the ancestor is not in the pack; a pack made `--with-ancestors` carries
 * every one (the root's flat files, each later link's diff files) under
 * `chain/<index>/`.
 */
export const PackChainLink = Type.Object({
  tag: Type.String({ pattern: TAG_PATTERN.source }),
  content_hash: Type.String({ pattern: SHA256 }),
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
  chain: Type.Array(PackChainLink, { maxItems: MAX_PACK_CHAIN }),
  /**
   * The content hash the installed snapshot has (checked at unpack). A hub's
   * index records it, so that a pull finds a diff's ancestors by it.
   */
  content_hash: Type.Optional(Type.String({ pattern: SHA256 })),
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

/** A diff pack holds exactly these (the disk diff only for a snapshot with a disk), and what each is a diff of. */
const DIFF_PACK_FILES: Readonly<Record<string, string | undefined>> = {
  [MANIFEST_FILE]: undefined,
  [SNAPSHOT_FILES.vmstate]: undefined,
  [SNAPSHOT_FILES.memoryDiff]: SNAPSHOT_FILES.memory,
  [SNAPSHOT_FILES.diskDiff]: SNAPSHOT_FILES.disk,
};

/** Whether a (parsed) pack is a diff pack: it names the ancestors it is installed over. */
export function isDiffPack(manifest: PackManifest): boolean {
  return manifest.chain.length > 0;
}

/** Whether a (parsed) diff pack carries its ancestors (`--with-ancestors`) instead of needing them installed. */
export function carriesAncestors(manifest: PackManifest): boolean {
  return manifest.chain.some((link) => link.files.length > 0);
}

/** Where a carried ancestor's file sits in the archive. */
export function chainEntryName(index: number, path: string): string {
  return `chain/${index}/${path}`;
}

/** An archive entry's link (a chain index, or null for the pack's own snapshot) and file name. */
export function splitEntryName(name: string): { link: number | null; path: string } {
  const match = /^chain\/(0|[1-9][0-9]?)\/([^/]+)$/.exec(name);
  return match ? { link: Number(match[1]), path: match[2]! } : { link: null, path: name };
}

/**
 * The manifest of one carried ancestor, as if it were a pack of its own: the
 * root as a full pack, every later link as a diff pack over the ones before.
 */
export function ancestorPackManifest(pack: PackManifest, index: number): PackManifest {
  const link = pack.chain[index]!;
  return {
    ...pack,
    tag: link.tag,
    files: link.files,
    chain: pack.chain.slice(0, index).map((a) => ({ ...a, files: [] })),
    content_hash: link.content_hash,
  };
}

/**
 * The content hash a full pack's snapshot has once installed, from its
 * snapshot.json and the sha256 the pack lists for its files.
 */
export function fullPackContentHash(
  snapshot: Pick<SnapshotManifest, 'image' | 'kernel' | 'vmstate' | 'disk'>,
  files: readonly PackFile[],
): string {
  const sha = (name: string) => files.find((f) => f.path === name)?.sha256 ?? '';
  return selfContainedContentHash(
    {
      image: snapshot.image,
      kernel: { ...snapshot.kernel, sha256: sha(SNAPSHOT_FILES.kernel) },
      initrd: { sha256: sha(SNAPSHOT_FILES.initrd) },
      vmstate: { ...snapshot.vmstate, sha256: sha(SNAPSHOT_FILES.vmstate) },
    },
    { memorySha256: sha(SNAPSHOT_FILES.memory), diskSha256: snapshot.disk ? sha(SNAPSHOT_FILES.disk) : null },
  );
}

/**
 * The most a memory diff of `memoryBytes` of RAM can be: its header, an
 * 8-byte table entry and a page of data for every 4 KiB page.
 */
export function memoryDiffLimit(memoryBytes: number): number {
  return 64 + memoryBytes + (memoryBytes / 4096) * 8;
}

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
  if (carriesAncestors(manifest)) {
    if (manifest.chain.some((link) => link.files.length === 0)) {
      throw new CorruptError(`${source} carries some of its ancestors but not all`, source);
    }
    // Each carried ancestor is checked as the pack it could have been on its own.
    manifest.chain.forEach((_link, index) => checkPackFiles(ancestorPackManifest(manifest, index), source));
  }
  checkPackFiles(manifest, source);
  return manifest;
}

/** A pack's (or a carried ancestor's) file list: known names, sane sizes, the shape of a full or a diff pack. */
function checkPackFiles(manifest: PackManifest, source: string): void {
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
  if (isDiffPack(manifest)) {
    checkDiffPackShape(manifest, source);
    return;
  }
  if (manifest.files.some((f) => f.diff_of !== undefined)) {
    throw new CorruptError(`${source} lists diff files but names no ancestors (chain is empty)`, source);
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
}

/** A diff pack: format 2 (or later), a chain of ancestors without cycles, its diff files and nothing flat. */
function checkDiffPackShape(manifest: PackManifest, source: string): void {
  if (manifest.format_version < PACK_DIFF_FORMAT_VERSION) {
    throw new CorruptError(
      `${source} is pack format ${manifest.format_version} but names ${manifest.chain.length} ancestors; a diff pack is format ${PACK_DIFF_FORMAT_VERSION}`,
      source,
    );
  }
  const tags = new Set(manifest.chain.map((link) => link.tag));
  if (tags.size !== manifest.chain.length || tags.has(manifest.tag)) {
    throw new CorruptError(`${source} names a chain of ancestors with a cycle (a tag twice)`, source);
  }
  for (const file of manifest.files) {
    if (!(file.path in DIFF_PACK_FILES)) {
      throw new CorruptError(
        `${source} is a diff pack but lists ${file.path}, which a diff pack does not hold`,
        source,
      );
    }
    if (file.diff_of !== DIFF_PACK_FILES[file.path]) {
      throw new CorruptError(
        `${source} says ${file.path} is a diff of ${file.diff_of ?? 'nothing'}; it is a diff of ${DIFF_PACK_FILES[file.path] ?? 'nothing'}`,
        source,
      );
    }
  }
  for (const required of [MANIFEST_FILE, SNAPSHOT_FILES.vmstate, SNAPSHOT_FILES.memoryDiff]) {
    if (!manifest.files.some((f) => f.path === required))
      throw new CorruptError(`${source} lacks ${required}`, source);
  }
  const memoryDiff = manifest.files.find((f) => f.path === SNAPSHOT_FILES.memoryDiff)!;
  const limit = memoryDiffLimit(manifest.machine.memory_mib * 2 ** 20);
  if (memoryDiff.size > limit) {
    throw new CorruptError(
      `${source} says ${SNAPSHOT_FILES.memoryDiff} is ${memoryDiff.size} bytes; a diff of ${manifest.machine.memory_mib} MiB of RAM is at most ${limit}`,
      source,
    );
  }
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
  contentHash: Type.Optional(Type.String({ pattern: SHA256 })),
  parent: Type.Optional(
    Type.Object({
      tag: Type.String({ pattern: TAG_PATTERN.source }),
      contentHash: Type.String({ pattern: SHA256 }),
    }),
  ),
  diff: Type.Optional(
    Type.Object({
      memory: Type.Object({
        file: Type.Literal(SNAPSHOT_FILES.memoryDiff),
        pages: Type.Integer({ minimum: 0 }),
        logicalBytes: Type.Integer({ minimum: 0 }),
        physicalBytes: Type.Integer({ minimum: 0 }),
      }),
      disk: Type.Union([
        Type.Null(),
        Type.Object({
          file: Type.Literal(SNAPSHOT_FILES.diskDiff),
          logicalBytes: Type.Integer({ minimum: 0 }),
          physicalBytes: Type.Integer({ minimum: 0 }),
        }),
      ]),
      ms: Type.Number({ minimum: 0 }),
    }),
  ),
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
  if (isDiffPack(pack)) return checkPackedLink(snapshot, pack, source);
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

/**
 * A diff pack's snapshot.json: a link whose parent is the chain's last entry,
 * whose diff files are the pack's, and whose flat files (rebuilt at unpack)
 * have the sizes the pack declares.
 */
function checkPackedLink(snapshot: SnapshotManifest, pack: PackManifest, source: string): SnapshotManifest {
  const parent = pack.chain[pack.chain.length - 1]!;
  const has = (name: string) => pack.files.some((f) => f.path === name);
  const memoryBytes = snapshot.machine.memoryMib * 2 ** 20;
  const { parent: named, diff } = snapshot;
  const fail = (problem: string) => new CorruptError(`${source}: its ${MANIFEST_FILE} ${problem}`, source);
  if (!named || !diff || !snapshot.contentHash) {
    throw fail('is not a diff link (no parent, diff or content hash)');
  }
  if (named.tag !== parent.tag || named.contentHash !== parent.content_hash) {
    throw fail(
      `names parent ${named.tag} (${named.contentHash.slice(0, 16)}), not the chain's ${parent.tag} (${parent.content_hash.slice(0, 16)})`,
    );
  }
  if (
    snapshot.machine.memoryMib !== pack.machine.memory_mib ||
    snapshot.memory.logicalBytes !== memoryBytes ||
    diff.memory.logicalBytes > memoryBytes
  ) {
    throw fail('disagrees with the pack manifest about the memory size');
  }
  if (
    snapshot.qemu.version !== pack.machine.qemu_version ||
    snapshot.machine.machineType !== pack.machine.machine_type
  ) {
    throw fail('disagrees with the pack manifest about the machine');
  }
  if (
    snapshot.machine.hasDisk !== (snapshot.disk !== null) ||
    (snapshot.disk !== null) !== (diff.disk !== null) ||
    (diff.disk !== null) !== has(SNAPSHOT_FILES.diskDiff)
  ) {
    throw fail('disagrees with the pack manifest about the disk');
  }
  return snapshot;
}
