// `forkd unpack`: a pack stream into the snapshot store. The archive is
// untrusted: entries are checked against the manifest before a byte is
// written, every file is written by forkd itself (tar never picks a path) into
// a staging dir beside the snapshots, sizes and sha256 are verified, and only
// a complete, verified snapshot is renamed into place. On any failure the
// staging dir goes and nothing else was touched. A diff pack is installed
// over its parent, which must be here already (diff-install.ts), unless the
// pack carries its ancestors: then each one not here yet is installed in
// turn, root first, each verified and installed on its own.
import { abortReason, throwIfAborted } from '../util/abort.js';
import { writeSync } from 'node:fs';
import { mkdir, open, readFile, statfs, type FileHandle } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import {
  AlreadyExistsError,
  ConflictError,
  CorruptError,
  ForkdError,
  ResourceExhaustedError,
} from '../errors.js';
import { checkRequirements, checkRestorable, type HostFacts } from '../snapshot/compat.js';
import { MANIFEST_FILE, SNAPSHOT_FILES, writeManifest, type SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotStore, StagedSnapshot } from '../snapshot/store.js';
import { assertValidTag } from '../snapshot/tag.js';
import { inspectDiskImage } from '../vmm/disk.js';
import {
  PACK_MANIFEST_ENTRY,
  ancestorPackManifest,
  carriesAncestors,
  checkPackedSnapshot,
  fullPackContentHash,
  isDiffPack,
  splitEntryName,
  type PackFile,
  type PackManifest,
} from './pack-manifest.js';
import { findDiffParent, rebuildFromParent, type DiffParent } from './diff-install.js';
import { snapshotContentHash } from '../snapshot/content-hash.js';
import { throttledProgress, type TransferProgressFn } from './progress.js';
import { SparseMapError, SparseMapReader, type Extent } from './sparse.js';
import { BackgroundHasher } from './background-hash.js';
import { paxRecords, type ArchiveEntry } from './tar-entries.js';
import type { Header } from 'tar-stream';
import { tarStructureGuard } from './tar-guard.js';
import { zstdDecompress } from './zstd.js';
import { readManifestEntry, readSignatureEntry } from './pack-info.js';
import { checkPackTrust, PACK_SIGNATURE_ENTRY, type TrustPolicy } from './signing.js';
import { HostCommandError } from '../util/run.js';
import { syncToDisk } from '../util/files.js';

export interface UnpackLimits {
  /** Bytes the archive may decompress to in total. */
  maxDecompressedBytes: number;
  /** Decompressed bytes per compressed byte, checked once past `ratioGraceBytes`. */
  maxRatio: number;
  ratioGraceBytes: number;
  /** Logical size of any one file (sparse files can claim a lot). */
  maxFileBytes: number;
  maxSparseRegions: number;
}

export const DEFAULT_UNPACK_LIMITS: UnpackLimits = {
  maxDecompressedBytes: 64 * 2 ** 30,
  maxRatio: 1000,
  ratioGraceBytes: 64 * 2 ** 20,
  // A disk image; the other files have tighter limits of their own (PACK_FILE_LIMITS).
  maxFileBytes: 64 * 2 ** 30,
  // forkd's packer finds data in 4 KiB blocks, so a region (data and the hole
  // after it) covers 8 KiB at least; this also bounds any one file.
  maxSparseRegions: 1_000_000,
};

/** Regions a sparse file of `size` bytes can have when found in 4 KiB blocks. */
export function sparseRegionLimit(size: number, limits: UnpackLimits): number {
  return Math.min(limits.maxSparseRegions, Math.ceil(size / 8192) + 1);
}

export interface UnpackOptions {
  /** The compressed pack bytes. */
  source: Readable;
  /** Names the pack in messages (a path or URL). */
  sourceName: string;
  /** Compressed size, when known, for progress. */
  sourceBytes?: number | null | undefined;
  store: SnapshotStore;
  host: HostFacts;
  /** Install under this tag instead of the pack's own. */
  tag?: string | undefined;
  /** Replace an existing snapshot with the same tag. */
  force?: boolean | undefined;
  limits?: Partial<UnpackLimits> | undefined;
  /** Whose signatures are accepted, and whether unsigned packs are. */
  trust: TrustPolicy;
  /** Stops the unpack; nothing is installed, the staging dir is removed and the reason thrown. */
  signal?: AbortSignal | undefined;
  onProgress?: TransferProgressFn | undefined;
  /** The content hash the installed snapshot must have (a pull that wants one snapshot in particular). */
  expectContentHash?: string | undefined;
}

export interface AncestorResult {
  tag: string;
  /** Installed now (false: it was here already, with the content hash the chain names). */
  installed: boolean;
  /** The hub package@version a pull fetched it from. */
  from?: string;
  downloadBytes?: number;
}

export interface UnpackResult {
  tag: string;
  dir: string;
  pack: PackManifest;
  snapshot: SnapshotManifest;
  /** Bytes written to disk (data blocks only). */
  storedBytes: number;
  /** The key id that signed the pack; null for an unsigned pack installed with allowUnsigned. */
  signer: string | null;
  /** The ancestors the pack carried (or a pull fetched), root first: installed now, or here already. */
  ancestors: AncestorResult[];
  ms: number;
}

/** A pack that breaks a rule; nothing was installed. */
export class PackRejectedError extends CorruptError {
  constructor(
    message: string,
    source: string,
    readonly entry: string | null,
  ) {
    super(message, source, { hint: 'the pack is damaged or unsafe; get it again from a source you trust' });
  }
}

export async function unpackPack(opts: UnpackOptions): Promise<UnpackResult> {
  const started = Date.now();
  const limits = { ...DEFAULT_UNPACK_LIMITS, ...opts.limits };
  if (opts.tag !== undefined) assertValidTag(opts.tag);
  await mkdir(opts.store.dataDir.snapshotsDir, { recursive: true });
  const zstd = zstdDecompress();
  const extract = tar.extract();
  let compressed = 0;
  let decompressed = 0;
  const reading = throttledProgress(opts.onProgress, 'unpack', opts.sourceBytes ?? null);
  const reject = (message: string, entry: string | null = null) =>
    new PackRejectedError(`${opts.sourceName}: ${message}`, opts.sourceName, entry);

  const input = pipeline(
    opts.source,
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        compressed += chunk.length;
        reading.add(chunk.length);
        done(null, chunk);
      },
    }),
    zstd.input,
  );
  const output = pipeline(
    zstd.output,
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        decompressed += chunk.length;
        if (decompressed > limits.maxDecompressedBytes) {
          return done(reject(`decompresses past the ${limits.maxDecompressedBytes}-byte limit`));
        }
        if (decompressed > limits.ratioGraceBytes && decompressed > compressed * limits.maxRatio) {
          return done(reject(`decompresses past the ${limits.maxRatio}:1 ratio limit`));
        }
        done(null, chunk);
      },
    }),
    tarStructureGuard((message) => reject(message)),
    extract,
  );
  // Failures surface in the entry loop; these keep them from going unhandled meanwhile.
  input.catch(() => {});
  output.catch(() => {});
  zstd.exited.catch(() => {});

  const hasher = new BackgroundHasher();
  const ctx: UnpackContext = { opts, limits, reject, hasher, staged: null };
  const onAbort = () => opts.source.destroy(abortReason(opts.signal!));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    throwIfAborted(opts.signal);
    const state = await readEntries(extract, ctx);
    await Promise.all([input, output, zstd.exited]).catch((err: unknown) => {
      throw asRejection(err, reject);
    });
    reading.done();
    const own = state.links[state.links.length - 1]!;
    const snapshot = await installLink(own, ctx);
    await hasher.close();
    return {
      tag: own.tag,
      dir: opts.store.dataDir.snapshotDir(own.tag),
      pack: state.manifest,
      snapshot,
      storedBytes: state.links
        .filter((link) => !link.present)
        .reduce((sum, link) => sum + link.manifest.files.reduce((n, f) => n + f.stored_bytes, 0), 0),
      signer: state.signer ?? null,
      ancestors: state.links.slice(0, -1).map((link) => ({ tag: link.tag, installed: !link.present })),
      ms: Date.now() - started,
    };
  } catch (err) {
    // A truncated or failing stream reports its own error first; the loop
    // sees only its echo ("truncated", a missing file, zstd's exit). Look
    // for it before stopping anything: our own kill is not a cause.
    const cause = await Promise.race([
      Promise.all([input, output, zstd.exited]).then(
        () => null,
        (e: unknown) => e,
      ),
      new Promise((resolve) => setTimeout(resolve, 50, null)),
    ]);
    zstd.kill();
    opts.source.destroy();
    extract.destroy();
    await ctx.staged?.discard();
    await hasher.close();
    if (opts.signal?.aborted) throw abortReason(opts.signal);
    const echo =
      err instanceof StreamEndedEarly || err instanceof HostCommandError || !(err instanceof ForkdError);
    throw asRejection(echo && cause ? cause : err, reject);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** The archive ended before the manifest or all its files; the stream's own error, if any, says why. */
class StreamEndedEarly extends PackRejectedError {}

type Reject = (message: string, entry?: string | null) => PackRejectedError;

/** What every step of one unpack shares; `staged` is the link being written, discarded on failure. */
interface UnpackContext {
  opts: UnpackOptions;
  limits: UnpackLimits;
  reject: Reject;
  hasher: BackgroundHasher;
  staged: StagedSnapshot | null;
}

/** One snapshot the pack installs: a carried ancestor, or the pack's own (always last). */
interface LinkState {
  /** Its chain index if it is a carried ancestor; null for the pack's own snapshot. */
  index: number | null;
  /** Its files and ancestors, as a pack of it alone would list them. */
  manifest: PackManifest;
  tag: string;
  /** A carried ancestor installed here already (same tag and content hash): its entries are read and dropped. */
  present: boolean;
  seen: Set<string>;
  digests: { file: PackFile; digest: Promise<string> }[];
  /** For a diff link: the local snapshot it is installed over. */
  parent: DiffParent | null;
  /** The content hash it must have once installed (null: nobody says). */
  contentHash: string | null;
}

interface PackState {
  manifest: PackManifest;
  /** The manifest entry's bytes, which a signature covers. */
  manifestBytes: Buffer;
  /** Set once the signature (or its absence) was accepted: undefined until then. */
  signer?: string | null;
  /** Carried ancestors root first, then the pack's own snapshot. */
  links: LinkState[];
  /** The link whose entries are being read. */
  current: number;
}

/**
 * Reads every entry into the staging dir of its link. A carried ancestor is
 * verified and installed as soon as the next link's first entry arrives; the
 * pack's own snapshot is left staged and verified, for the caller to install
 * once the stream ended cleanly.
 */
async function readEntries(extract: tar.Extract, ctx: UnpackContext): Promise<PackState> {
  const { reject, opts } = ctx;
  let state: PackState | null = null;
  for await (const entry of extract) {
    const header = entry.header;
    const shownName = JSON.stringify(header.name.slice(0, 120));
    if (header.name.startsWith('/') || header.name.split('/').includes('..') || header.name.includes('\\')) {
      throw reject(`entry ${shownName} escapes the snapshot directory`, header.name);
    }
    if (header.type !== 'file') {
      throw reject(
        `entry ${shownName} is a ${header.type ?? 'special'} entry; packs hold regular files only`,
        header.name,
      );
    }
    if (state === null) {
      if (header.name !== PACK_MANIFEST_ENTRY) {
        throw reject(`the first entry is ${shownName}, not the manifest ${PACK_MANIFEST_ENTRY}`, header.name);
      }
      state = await startFromManifest(entry, opts, reject);
      continue;
    }
    if (state.signer === undefined) {
      // Trust is settled before a single file is written.
      const signed = header.name === PACK_SIGNATURE_ENTRY;
      const signature = signed ? await readSignatureEntry(entry, (m) => reject(m, header.name)) : null;
      state.signer = checkPackTrust(state.manifestBytes, signature, opts.trust, opts.sourceName);
      await startLink(state.links[0]!, ctx);
      if (signed) continue;
    }
    const entryName = entryFileName(header, reject);
    const { link: index, path: name } = splitEntryName(entryName);
    const position = index ?? state.links.length - 1;
    const link = state.links[position];
    if (!link || link.index !== index)
      throw reject(`entry ${shownName} is not listed in the manifest`, header.name);
    if (position < state.current) {
      throw reject(`entry ${shownName} comes after the files of a later snapshot in the chain`, header.name);
    }
    // A later link's first file: the links before it are complete, and installed before it needs them.
    while (state.current < position) {
      const done = state.links[state.current]!;
      await completeLink(done, ctx, JSON.stringify(entryName));
      if (!done.present) await installLink(done, ctx);
      await startLink(state.links[++state.current]!, ctx);
    }
    const file = link.manifest.files.find((f) => f.path === name);
    if (!file) throw reject(`entry ${shownName} is not listed in the manifest`, header.name);
    if (link.seen.has(name)) throw reject(`entry ${shownName} appears twice`, header.name);
    link.seen.add(name);
    if (file.size > ctx.limits.maxFileBytes) {
      throw reject(`${name} claims ${file.size} bytes, past the ${ctx.limits.maxFileBytes}-byte limit`, name);
    }
    if (link.present) {
      for await (const chunk of entry) void chunk; // here already: only its place in the archive is checked
      continue;
    }
    await writeEntryFile(entry, header, file, ctx.staged!.path(name), ctx.limits, reject, ctx.hasher);
    const digest = ctx.hasher.finish();
    digest.catch(() => {}); // awaited once every file of the link is written
    link.digests.push({ file, digest });
  }
  if (state === null) {
    throw new StreamEndedEarly(
      `${opts.sourceName}: the archive is empty (no manifest)`,
      opts.sourceName,
      null,
    );
  }
  // Checked in archive order, so that the first missing file is the one named.
  if (state.signer === undefined) await completeLink(state.links[0]!, ctx);
  await completeLink(state.links[state.current]!, ctx);
  if (state.current !== state.links.length - 1) {
    const missing = state.links.slice(state.current + 1).map((l) => `${l.tag}'s files`);
    throw new StreamEndedEarly(
      `${opts.sourceName}: the archive is truncated: ${missing.join(', ')} missing`,
      opts.sourceName,
      null,
    );
  }
  return state;
}

/**
 * Every file of a link arrived, and each matches its sha256. `next` names the
 * entry of a later link that arrived (mid-stream); without it, the archive ended.
 */
async function completeLink(link: LinkState, ctx: UnpackContext, next?: string): Promise<void> {
  const missing = link.manifest.files.filter((f) => !link.seen.has(f.path)).map((f) => f.path);
  if (missing.length > 0) {
    const of = link.index === null ? '' : ` of ancestor ${link.tag}`;
    if (next !== undefined) {
      throw ctx.reject(
        `entry ${next} comes before ${missing.join(', ')}${of}: each snapshot's files come together, root first`,
      );
    }
    throw new StreamEndedEarly(
      `${ctx.opts.sourceName}: the archive is truncated: ${missing.join(', ')}${of} missing`,
      ctx.opts.sourceName,
      null,
    );
  }
  for (const { file, digest } of link.digests) {
    if ((await digest) !== file.sha256) {
      throw ctx.reject(`${file.path} does not match its sha256 in the manifest`, file.path);
    }
  }
}

/** A link's first file is about to arrive: a staging dir for it, and the local parent a diff needs. */
async function startLink(link: LinkState, ctx: UnpackContext): Promise<void> {
  if (link.present) return;
  if (isDiffPack(link.manifest) && link.parent === null) {
    link.parent = await findDiffParent(
      ctx.opts.store,
      link.manifest,
      link.tag,
      ctx.opts.sourceName,
      ctx.reject,
    );
  }
  ctx.staged = await ctx.opts.store.beginStaging();
}

/** Checks a complete, verified staged link against its parent and the pack, and installs it. */
async function installLink(link: LinkState, ctx: UnpackContext): Promise<SnapshotManifest> {
  const staged = ctx.staged!;
  const { snapshot, rebuilt, contentHash } = await finishStaged(staged, link, ctx);
  const wanted = [link.contentHash, link.index === null ? ctx.opts.expectContentHash : undefined];
  for (const hash of wanted) {
    if (hash && hash !== contentHash) {
      throw ctx.reject(`${link.tag} has content hash ${contentHash}, not the ${hash} it was named by`);
    }
  }
  await syncToDisk(staged.dir, [...link.manifest.files.map((f) => f.path), ...rebuilt]);
  throwIfAborted(ctx.opts.signal);
  await staged.install(link.tag, {
    replace: link.index === null && (ctx.opts.force ?? false),
    parent: snapshot.parent,
  });
  ctx.staged = null;
  return snapshot;
}

async function startFromManifest(
  entry: ArchiveEntry,
  opts: UnpackOptions,
  reject: Reject,
): Promise<PackState> {
  const { manifest, bytes: manifestBytes } = await readManifestEntry(entry, opts.sourceName, reject);
  const tag = opts.tag ?? manifest.tag;
  checkPackMachine(manifest, opts);
  if (!opts.force && (await opts.store.exists(tag))) {
    throw new AlreadyExistsError(
      `snapshot ${JSON.stringify(tag)} already exists`,
      { kind: 'snapshot', name: tag },
      { hint: 'pass --force to replace it, or --tag to unpack under another name' },
    );
  }
  const link = (index: number | null, linkManifest: PackManifest, linkTag: string): LinkState => ({
    index,
    manifest: linkManifest,
    tag: linkTag,
    present: false,
    seen: new Set<string>(),
    digests: [],
    parent: null,
    contentHash: linkManifest.content_hash ?? null,
  });
  const links: LinkState[] = [];
  if (carriesAncestors(manifest)) {
    if (manifest.chain.some((a) => a.tag === tag)) {
      throw new ConflictError(
        `${opts.sourceName} carries an ancestor ${tag}: it cannot be installed as ${tag}`,
        {
          hint: 'unpack it under another tag (--tag)',
        },
      );
    }
    for (const [index, ancestor] of manifest.chain.entries()) {
      const state = link(index, ancestorPackManifest(manifest, index), ancestor.tag);
      state.present = await installedAs(opts.store, ancestor.tag, ancestor.content_hash, opts.sourceName);
      links.push(state);
    }
  }
  const own = link(null, manifest, tag);
  // Before a byte is written: a diff pack's parent and ancestors must be here.
  if (isDiffPack(manifest) && !carriesAncestors(manifest)) {
    own.parent = await findDiffParent(opts.store, manifest, tag, opts.sourceName, reject);
  }
  links.push(own);
  // Each diff link's flat RAM file is rebuilt here too (a reflink where the filesystem has them).
  const toInstall = links.filter((l) => !l.present);
  const memoryBytes = manifest.machine.memory_mib * 2 ** 20;
  const needed =
    toInstall.reduce((sum, l) => sum + l.manifest.files.reduce((n, f) => n + f.stored_bytes, 0), 0) +
    toInstall.filter((l) => isDiffPack(l.manifest)).length *
      (own.parent?.manifest.memory.physicalBytes ?? memoryBytes);
  const fs = await statfs(opts.store.dataDir.snapshotsDir);
  const free = fs.bavail * fs.bsize;
  if (needed > free) {
    throw new ResourceExhaustedError(
      `unpacking ${opts.sourceName} needs ${needed} bytes and ${opts.store.dataDir.snapshotsDir} has ${free} free`,
      { hint: 'free some disk space (forkd rmi, forkd cleanup) and try again' },
    );
  }
  return { manifest, manifestBytes, links, current: 0 };
}

/**
 * Whether a carried ancestor is installed here already: the same tag with
 * the same content hash. The same tag with another hash is another snapshot,
 * which the pack's links could never be installed over.
 */
async function installedAs(
  store: SnapshotStore,
  tag: string,
  contentHash: string,
  source: string,
): Promise<boolean> {
  if (!(await store.exists(tag))) return false;
  const local = await snapshotContentHash(store, tag).catch((err: unknown) => {
    if (!(err instanceof ConflictError)) throw err;
    throw new ConflictError(`${source} carries ancestor ${tag}, but ${err.message}`, { hint: err.hint });
  });
  if (local === contentHash) return true;
  throw new ConflictError(
    `${source} carries ancestor ${tag} with content hash ${contentHash}, but the local ${tag} has content hash ${local}`,
    { hint: `the local ${tag} is another snapshot: remove it (forkd rmi ${tag}) or unpack where it is not` },
  );
}

/** Refuse early (before the big files arrive) when this host cannot restore the pack. */
function checkPackMachine(manifest: PackManifest, opts: UnpackOptions): void {
  const m = manifest.machine;
  // Its RAM file is the declared memory: a machine bigger than this host is no snapshot to write here.
  if (m.memory_mib * 2 ** 20 > totalmem()) {
    throw new PackRejectedError(
      `${opts.sourceName} declares a ${m.memory_mib} MiB machine; this host has ${Math.floor(totalmem() / 2 ** 20)} MiB`,
      opts.sourceName,
      null,
    );
  }
  checkRequirements(
    { tag: manifest.tag, qemuVersion: m.qemu_version, machineType: m.machine_type, accel: m.accel },
    opts.host,
  );
}

function entryFileName(
  header: Header,
  reject: (message: string, entry?: string) => PackRejectedError,
): string {
  const pax = paxRecords(header);
  if (pax['GNU.sparse.major'] === undefined) return header.name;
  const name = pax['GNU.sparse.name'] ?? '';
  if (pax['GNU.sparse.major'] !== '1' || pax['GNU.sparse.minor'] !== '0') {
    throw reject(`entry ${JSON.stringify(name)} uses an unsupported sparse format`, name);
  }
  if (name.startsWith('/') || name.split('/').includes('..')) {
    throw reject(`entry ${JSON.stringify(name.slice(0, 120))} escapes the snapshot directory`, name);
  }
  return name;
}

/**
 * Write one entry to `path`, verifying it against its manifest line as it
 * goes: the stored size, the logical size, and the sha256 of the logical
 * content (holes hash as zeros).
 */
async function writeEntryFile(
  entry: ArchiveEntry,
  header: Header,
  file: PackFile,
  path: string,
  limits: UnpackLimits,
  reject: (message: string, entry?: string) => PackRejectedError,
  hasher: BackgroundHasher,
): Promise<void> {
  const pax = paxRecords(header);
  const sparse = pax['GNU.sparse.major'] !== undefined;
  const realSize = sparse ? Number(pax['GNU.sparse.realsize']) : header.size;
  if (!Number.isSafeInteger(realSize) || realSize !== file.size) {
    throw reject(
      `${file.path} is ${realSize} bytes in the archive but ${file.size} in the manifest`,
      file.path,
    );
  }
  if (!sparse && file.stored_bytes !== file.size) {
    throw reject(
      `${file.path} stores ${header.size} bytes but the manifest says ${file.stored_bytes}`,
      file.path,
    );
  }
  const handle = await open(path, 'wx', 0o644);
  try {
    const writer = new ExtentWriter(handle, hasher);
    if (sparse) {
      const mapReader = new SparseMapReader(file.size, { maxRegions: sparseRegionLimit(file.size, limits) });
      let regions: Extent[] | null = null;
      for await (const chunk of entry) {
        if (regions === null) {
          let parsed: ReturnType<SparseMapReader['push']>;
          try {
            parsed = mapReader.push(chunk as Buffer);
          } catch (err) {
            throw reject(`${file.path}: ${(err as SparseMapError).message}`, file.path);
          }
          if (parsed === null) continue;
          regions = parsed.regions;
          const dataBytes = regions.reduce((sum, r) => sum + r.length, 0);
          if (dataBytes !== file.stored_bytes || mapReader.mapBytes + dataBytes !== header.size) {
            throw reject(`${file.path}: its sparse map disagrees with the manifest's stored size`, file.path);
          }
          writer.setRegions(regions);
          await writer.write(parsed.rest);
        } else await writer.write(chunk as Buffer);
      }
      if (regions === null) throw reject(`${file.path}: the sparse map is cut short`, file.path);
    } else {
      writer.setRegions(file.size > 0 ? [{ offset: 0, length: file.size }] : []);
      for await (const chunk of entry) await writer.write(chunk as Buffer);
    }
    await writer.finish(file.size);
    await handle.truncate(file.size);
  } finally {
    await handle.close();
  }
}

/** Pieces gathered before they are written and hashed together. */
const BATCH_BYTES = 1 << 20;
const BATCH_PIECES = 1024;

/**
 * Lays entry data out over a file's regions with positional writes; hashes
 * the logical content (holes as zeros). Pieces are gathered into batches:
 * each batch is written with synchronous pwrites in one go (a thread-pool
 * round trip per region made a pack of a million small regions take
 * minutes) and hashed as one message.
 */
class ExtentWriter {
  private regions: Extent[] = [];
  private index = 0;
  private within = 0;
  private hashedTo = 0;
  private batch: Array<{ piece: Buffer; position: number }> = [];
  private batchBytes = 0;

  constructor(
    private readonly handle: FileHandle,
    private readonly hash: Pick<BackgroundHasher, 'updateRuns' | 'zeros'>,
  ) {}

  setRegions(regions: Extent[]): void {
    this.regions = regions;
  }

  async write(data: Buffer): Promise<void> {
    let at = 0;
    while (at < data.length) {
      const region = this.regions[this.index];
      if (!region) throw new CorruptError('entry data runs past its regions', '');
      const take = Math.min(region.length - this.within, data.length - at);
      this.batch.push({ piece: data.subarray(at, at + take), position: region.offset + this.within });
      this.batchBytes += take;
      this.within += take;
      at += take;
      if (this.within === region.length) {
        this.index++;
        this.within = 0;
      }
      if (this.batchBytes >= BATCH_BYTES || this.batch.length >= BATCH_PIECES) await this.flush();
    }
  }

  async finish(size: number): Promise<void> {
    await this.flush();
    this.hash.zeros(size - this.hashedTo);
    this.hashedTo = size;
  }

  private async flush(): Promise<void> {
    if (this.batch.length === 0) return;
    const runs: Array<Buffer | number> = [];
    for (const { piece, position } of this.batch) {
      for (let done = 0; done < piece.length;) {
        done += writeSync(this.handle.fd, piece, done, piece.length - done, position + done);
      }
      runs.push(position - this.hashedTo, piece);
      this.hashedTo = position + piece.length;
    }
    this.batch = [];
    this.batchBytes = 0;
    await this.hash.updateRuns(runs);
  }
}

/**
 * After every file arrived: the packed snapshot.json must agree with the pack
 * manifest, this host must be able to restore it, and the disk layer may
 * only point at the base image beside it (a qcow2 backing path is a path on
 * the host that QEMU would open). A diff pack's flat files are then rebuilt
 * from its parent's. Returns the installed manifest and the files rebuilt.
 */
async function finishStaged(
  staged: StagedSnapshot,
  state: LinkState,
  ctx: UnpackContext,
): Promise<{ snapshot: SnapshotManifest; rebuilt: string[]; contentHash: string }> {
  const { opts, reject } = ctx;
  let value: unknown;
  try {
    value = JSON.parse(await readFile(staged.path(MANIFEST_FILE), 'utf8'));
  } catch {
    throw reject(`its ${MANIFEST_FILE} is not JSON`, MANIFEST_FILE);
  }
  const snapshot = checkPackedSnapshot(value, state.manifest, opts.sourceName);
  checkRestorable(snapshot, opts.host);
  if (state.parent) {
    const rebuilt = await rebuildFromParent(
      opts.store,
      staged,
      snapshot,
      state.manifest,
      state.parent,
      reject,
      opts.signal,
    );
    const installed: SnapshotManifest = { ...snapshot, tag: state.tag };
    if (installed.tag !== snapshot.tag) await writeManifest(staged.dir, installed);
    // rebuildFromParent checked it against the parent's hash and the diff files.
    return { snapshot: installed, rebuilt, contentHash: snapshot.contentHash! };
  }
  if (snapshot.disk) {
    const layer = await inspectDiskImage(staged.path(SNAPSHOT_FILES.disk), 'qcow2').catch(() => {
      throw reject(
        `its disk layer ${SNAPSHOT_FILES.disk} is not a readable qcow2 image`,
        SNAPSHOT_FILES.disk,
      );
    });
    if (
      layer.backingFile !== SNAPSHOT_FILES.rootfs ||
      layer.backingFormat !== 'raw' ||
      layer.dataFile !== null
    ) {
      throw reject(
        `its disk layer refers to ${JSON.stringify(layer.dataFile ?? layer.backingFile)}; only ${SNAPSHOT_FILES.rootfs} beside it is allowed`,
        SNAPSHOT_FILES.disk,
      );
    }
  }
  // A full pack is a self-contained snapshot whatever its snapshot.json says
  // (a link packed whole before --self-contained stripped it). Its content
  // hash is kept only if it is the hash of the verified files (the pack
  // manifest lists their sha256s): parents are matched by it.
  const installed: SnapshotManifest = { ...snapshot, tag: state.tag };
  delete installed.parent;
  delete installed.diff;
  const contentHash = fullPackContentHash(snapshot, state.manifest.files);
  if (installed.contentHash !== undefined && installed.contentHash !== contentHash) {
    delete installed.contentHash;
  }
  if (JSON.stringify(installed) !== JSON.stringify(snapshot)) await writeManifest(staged.dir, installed);
  return { snapshot: installed, rebuilt: [], contentHash };
}

function asRejection(err: unknown, reject: (message: string) => PackRejectedError): Error {
  if (err instanceof ForkdError && !(err instanceof HostCommandError)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return reject(`the archive is damaged or truncated (${message})`);
}
