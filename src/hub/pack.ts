// `forkd pack`: one snapshot into one .forkd.tar.zst. Every file is read
// twice: once for its sha256 and data blocks (the manifest, which comes
// first, lists them), once to stream the data blocks through tar and
// multi-threaded zstd into the output. Nothing is copied to a temporary file
// but the output itself, which appears under its name only when complete.
// A diff link packs as a diff pack (its diff files; its ancestors named by
// tag and content hash), as one that also carries its ancestors
// (`--with-ancestors`: the root's flat files and every later link's diff
// files, under chain/<index>/), or, without a chain, as a self-contained copy.
import { abortReason, throwIfAborted } from '../util/abort.js';
import { createHash, type KeyObject } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import tar from 'tar-stream';
import { InvalidArgumentError } from '../errors.js';
import { FORKD_VERSION } from '../version.js';
import { MANIFEST_FILE, SNAPSHOT_FILES, type SnapshotManifest } from '../snapshot/manifest.js';
import { onProcessExit } from '../util/cleanup.js';
import {
  chainEntryName,
  fullPackContentHash,
  PACK_DIFF_FORMAT_VERSION,
  PACK_FORMAT,
  PACK_FULL_FORMAT_VERSION,
  PACK_MANIFEST_ENTRY,
  type PackChainLink,
  type PackFile,
  type PackManifest,
} from './pack-manifest.js';
import { throttledProgress, type TransferProgressFn } from './progress.js';
import { isDense, scanFile, type Extent, type FileScan } from './sparse.js';
import { denseHeader, sparseHeader, writeEntry } from './tar-entries.js';
import { PACK_SIGNATURE_ENTRY, signManifest, type PackSignature } from './signing.js';
import { PACK_WINDOW_LOG, zstdCompress } from './zstd.js';

export const DEFAULT_PACK_LEVEL = 9;

export interface PackOptions {
  /** The snapshot dir and its (ready) manifest. */
  dir: string;
  snapshot: SnapshotManifest;
  /**
   * For a diff link: its ancestors, root first (pack-chain.ts). Then the pack
   * holds only the link's diff files. Without it a link is packed as a
   * self-contained snapshot (its flat files, no parent).
   */
  chain?: readonly { tag: string; contentHash: string }[] | undefined;
  /**
   * The chain's snapshots themselves, root first, to carry in the pack
   * (`--with-ancestors`): whoever unpacks it needs nothing installed.
   */
  ancestors?: readonly { dir: string; snapshot: SnapshotManifest }[] | undefined;
  output: string;
  description?: string | undefined;
  /** zstd level 1-22 (default 9; 19 is a third smaller and ten times slower). */
  level?: number | undefined;
  /** Sign the manifest with this ed25519 private key (`forkd keygen`). */
  signKey?: KeyObject | undefined;
  onProgress?: TransferProgressFn | undefined;
  /** Stops the pack; the partial output is removed and the reason thrown. */
  signal?: AbortSignal | undefined;
}

export interface PackResult {
  path: string;
  bytes: number;
  sha256: string;
  manifest: PackManifest;
  /** The signature written into the pack, if it was signed. */
  signature: PackSignature | null;
  timings: { scanMs: number; writeMs: number };
}

/**
 * Files in archive order. The RAM file goes after the kernel and the disk:
 * zstd's long-distance matching then finds the guest's copies of them.
 */
export function snapshotPackFiles(snapshot: SnapshotManifest, opts: { diff?: boolean } = {}): string[] {
  if (opts.diff) {
    return [
      ...(snapshot.diff?.disk ? [SNAPSHOT_FILES.diskDiff] : []),
      SNAPSHOT_FILES.memoryDiff,
      SNAPSHOT_FILES.vmstate,
      MANIFEST_FILE,
    ];
  }
  return [
    SNAPSHOT_FILES.kernel,
    SNAPSHOT_FILES.initrd,
    ...(snapshot.disk ? [SNAPSHOT_FILES.rootfs, SNAPSHOT_FILES.disk] : []),
    SNAPSHOT_FILES.memory,
    SNAPSHOT_FILES.vmstate,
    MANIFEST_FILE,
  ];
}

export async function packSnapshot(opts: PackOptions): Promise<PackResult> {
  const level = opts.level ?? DEFAULT_PACK_LEVEL;
  if (!Number.isInteger(level) || level < 1 || level > 22) {
    throw new InvalidArgumentError(`zstd level must be 1-22, got ${level}`, 'level');
  }
  const chain = opts.chain ?? [];
  const diff = chain.length > 0;
  if (diff && (!opts.snapshot.parent || !opts.snapshot.diff)) {
    throw new InvalidArgumentError(`snapshot ${opts.snapshot.tag} is not a diff link`, 'chain');
  }
  const ancestors = opts.ancestors ?? [];
  if (
    ancestors.length > 0 &&
    ancestors.map((a) => a.snapshot.tag).join('\0') !== chain.map((a) => a.tag).join('\0')
  ) {
    throw new InvalidArgumentError(
      `the ancestors to carry are not the chain of ${opts.snapshot.tag}`,
      'ancestors',
    );
  }
  // Archive order: the root first, so that an unpack can install each link before the next needs it.
  const items = [
    ...ancestors.flatMap((a, index) => linkItems(a.dir, a.snapshot, index > 0, index)),
    ...linkItems(opts.dir, opts.snapshot, diff, null),
  ];
  const started = Date.now();
  const sizes = await Promise.all(
    items.map(async (item) => item.bytes?.length ?? (await stat(item.path)).size),
  );
  const scanning = throttledProgress(
    opts.onProgress,
    'scan',
    sizes.reduce((a, b) => a + b, 0),
  );
  const scans = new Map<string, FileScan>();
  for (const item of items) {
    throwIfAborted(opts.signal);
    scans.set(
      item.entry,
      item.bytes ? scanBuffer(item.bytes) : await scanFile(item.path, (n) => scanning.add(n)),
    );
  }
  throwIfAborted(opts.signal);
  scanning.done();
  const scanMs = Date.now() - started;

  const filesOf = (link: number | null): PackFile[] =>
    items
      .filter((item) => item.link === link)
      .map((item) => {
        const scan = scans.get(item.entry)!;
        const diffOf = item.diff ? DIFF_OF[item.name] : undefined;
        return {
          path: item.name,
          size: scan.size,
          sha256: scan.sha256,
          stored_bytes: scan.dataBytes,
          ...(diffOf ? { diff_of: diffOf } : {}),
        };
      });
  const files = filesOf(null);
  const manifest = buildPackManifest(opts, files, (index) => (ancestors.length > 0 ? filesOf(index) : []));
  const mtime = new Date(opts.snapshot.createdAt);
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const signature = opts.signKey ? signManifest(manifestBytes, opts.signKey) : null;

  const partial = `${opts.output}.${randomBytes(4).toString('hex')}.partial`;
  const forget = onProcessExit(() => rmSync(partial, { force: true }));
  const zstd = zstdCompress({ level });
  const archive = tar.pack();
  archive.on('error', () => {}); // its failures reach us through the entries and zstd
  const hash = createHash('sha256');
  let bytes = 0;
  const writing = throttledProgress(
    opts.onProgress,
    'pack',
    files.reduce((sum, f) => sum + f.stored_bytes, 0),
  );
  try {
    const output = pipeline(
      zstd.output,
      new Transform({
        transform(chunk: Buffer, _enc, done) {
          hash.update(chunk);
          bytes += chunk.length;
          done(null, chunk);
        },
      }),
      createWriteStream(partial, { flags: 'wx' }),
    );
    archive.pipe(zstd.input);
    const entries = (async () => {
      await writeEntry(
        archive,
        denseHeader({ name: PACK_MANIFEST_ENTRY, size: manifestBytes.length, mtime }),
        [manifestBytes],
      );
      if (signature) {
        const signatureBytes = Buffer.from(JSON.stringify(signature) + '\n');
        await writeEntry(
          archive,
          denseHeader({ name: PACK_SIGNATURE_ENTRY, size: signatureBytes.length, mtime }),
          [signatureBytes],
        );
      }
      for (const item of items) {
        const scan = scans.get(item.entry)!;
        const file = { name: item.entry, size: scan.size, mtime };
        const data = item.bytes
          ? once(item.bytes, (n) => writing.add(n))
          : readExtents(item.path, scan.extents, (n) => writing.add(n));
        if (isDense(scan)) {
          await writeEntry(archive, denseHeader(file), data);
        } else {
          const { header, map } = sparseHeader(file, scan.extents, scan.dataBytes);
          await writeEntry(archive, header, prepend(map, data));
        }
      }
      archive.finalize();
    })();
    // One failure stops the rest (a dead zstd never drains the archive); the
    // most telling error wins: the output file's, then zstd's, then tar's.
    const stopOnFailure = (work: Promise<unknown>) =>
      work.catch((err: unknown) => {
        zstd.kill();
        archive.destroy(err instanceof Error ? err : new Error(String(err)));
        throw err;
      });
    const onAbort = () => {
      zstd.kill();
      archive.destroy(abortReason(opts.signal!));
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const results = await Promise.allSettled([output, zstd.exited, entries].map(stopOnFailure)).finally(() =>
      opts.signal?.removeEventListener('abort', onAbort),
    );
    throwIfAborted(opts.signal);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    writing.done();
    await rename(partial, opts.output);
  } catch (err) {
    zstd.kill();
    archive.destroy();
    await rm(partial, { force: true });
    throw err;
  } finally {
    forget();
  }
  return {
    path: opts.output,
    bytes,
    sha256: hash.digest('hex'),
    manifest,
    signature,
    timings: { scanMs, writeMs: Date.now() - started - scanMs },
  };
}

/** What each diff file of a diff pack is a diff of. */
const DIFF_OF: Readonly<Record<string, string>> = {
  [SNAPSHOT_FILES.memoryDiff]: SNAPSHOT_FILES.memory,
  [SNAPSHOT_FILES.diskDiff]: SNAPSHOT_FILES.disk,
};

/** One file of the pack: where it comes from and the entry it becomes. */
interface PackItem {
  /** The archive entry: the file's name, under chain/<index>/ for a carried ancestor. */
  entry: string;
  /** The chain index of the carried ancestor it belongs to; null for the pack's own snapshot. */
  link: number | null;
  /** Its name in the snapshot dir. */
  name: string;
  path: string;
  /** Whether it is a diff file of a diff link. */
  diff: boolean;
  /** Made in memory instead of read from `path`. */
  bytes?: Buffer;
}

/**
 * One snapshot's files: its diff files (a link packed as a diff), or its flat
 * files, where a link packed whole gets a snapshot.json that says it is
 * self-contained.
 */
function linkItems(dir: string, snapshot: SnapshotManifest, diff: boolean, link: number | null): PackItem[] {
  let flatManifest: Buffer | undefined;
  if (!diff && (snapshot.parent || snapshot.diff)) {
    const flat: SnapshotManifest = { ...snapshot };
    delete flat.parent;
    delete flat.diff;
    delete flat.contentHash; // a link's hash; a self-contained copy's is computed from its files
    flatManifest = Buffer.from(JSON.stringify(flat, null, 2) + '\n');
  }
  return snapshotPackFiles(snapshot, { diff }).map((name) => ({
    entry: link === null ? name : chainEntryName(link, name),
    link,
    name,
    path: join(dir, name),
    diff,
    ...(name === MANIFEST_FILE && flatManifest ? { bytes: flatManifest } : {}),
  }));
}

function buildPackManifest(
  opts: PackOptions,
  files: PackFile[],
  carried: (index: number) => PackFile[],
): PackManifest {
  const s = opts.snapshot;
  const chain: PackChainLink[] = (opts.chain ?? []).map((link, index) => ({
    tag: link.tag,
    content_hash: link.contentHash,
    files: carried(index),
  }));
  const contentHash = chain.length > 0 ? s.contentHash : fullPackContentHash(s, files);
  return {
    format: PACK_FORMAT,
    format_version: chain.length > 0 ? PACK_DIFF_FORMAT_VERSION : PACK_FULL_FORMAT_VERSION,
    tag: s.tag,
    description:
      opts.description ?? `${s.image.recipe} snapshot${s.runtime ? ` (${s.runtime.kind} warm)` : ''}`,
    created_at: s.createdAt,
    forkd_version: FORKD_VERSION,
    machine: {
      qemu_version: s.qemu.version,
      machine_type: s.machine.machineType,
      cpu_model: s.machine.cpuModel,
      accel: s.machine.accel,
      memory_mib: s.machine.memoryMib,
      vcpus: s.machine.vcpus,
    },
    base_image: { recipe: s.image.recipe, content_hash: s.image.contentHash, kernel: s.kernel.version },
    files,
    chain,
    ...(contentHash ? { content_hash: contentHash } : {}),
    compression: { codec: 'zstd', window_log: PACK_WINDOW_LOG },
  };
}

/** A file made in memory (a self-contained copy's snapshot.json), stored dense. */
function scanBuffer(bytes: Buffer): FileScan {
  return {
    size: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    extents: bytes.length > 0 ? [{ offset: 0, length: bytes.length }] : [],
    dataBytes: bytes.length,
  };
}

async function* once(bytes: Buffer, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  onBytes(bytes.length);
  yield bytes;
}

async function* prepend(first: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  yield* rest;
}

/** The bytes of a file's extents, in order, in fresh buffers (tar-stream keeps them queued). */
export async function* readExtents(
  path: string,
  extents: readonly Extent[],
  onBytes: (n: number) => void,
): AsyncGenerator<Buffer> {
  const file = await open(path, 'r');
  try {
    for (const extent of extents) {
      for (let at = extent.offset; at < extent.offset + extent.length;) {
        const want = Math.min(1 << 20, extent.offset + extent.length - at);
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await file.read(buf, 0, want, at);
        if (bytesRead !== want) throw new Error(`${path} shrank while it was being packed`);
        at += bytesRead;
        onBytes(bytesRead);
        yield buf;
      }
    }
  } finally {
    await file.close();
  }
}
