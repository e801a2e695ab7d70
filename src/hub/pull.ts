// `forkd pull`: a package name (resolved through a hub's index) or a pack
// URL, downloaded with resume into the data dir's download cache, verified,
// and unpacked into the snapshot store. The download is deleted once its
// snapshot is installed. A diff pack's ancestors that are not installed are
// found on the same hub by content hash and pulled first, root first.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  AlreadyExistsError,
  ConflictError,
  InvalidArgumentError,
  NotFoundError,
  UntrustedPackError,
} from '../errors.js';
import { snapshotContentHash } from '../snapshot/content-hash.js';
import type { HostFacts } from '../snapshot/compat.js';
import type { SnapshotStore } from '../snapshot/store.js';
import { assertValidTag, isValidTag } from '../snapshot/tag.js';
import { downloadFile, fetchJson } from './download.js';
import { PACK_EXTENSION } from './pack-manifest.js';
import type { TransferProgressFn } from './progress.js';
import {
  indexUrlFor,
  parsePackageRef,
  parseRegistryIndex,
  findByContentHash,
  resolvePackage,
  type IndexVersion,
  type RegistryIndex,
} from './registry-index.js';
import { untrustedSigner, type TrustPolicy } from './signing.js';
import { unpackPack, type AncestorResult, type UnpackResult } from './unpack.js';

export interface PullOptions {
  /** owner/name[@version], or an http(s) URL of a pack. */
  ref: string;
  /** The hub (base URL or index URL); needed for package names. */
  hub?: string | undefined;
  store: SnapshotStore;
  host: HostFacts;
  tag?: string | undefined;
  force?: boolean | undefined;
  /** Whose signatures are accepted, and whether unsigned packs are. */
  trust: TrustPolicy;
  signal?: AbortSignal | undefined;
  onProgress?: TransferProgressFn | undefined;
  /** One-line notices worth telling a user (how the pack was verified). */
  onNotice?: ((message: string) => void) | undefined;
}

export interface PullResult extends UnpackResult {
  url: string;
  sha256: string;
  /** "pack": the whole pack matched the index's sha256; "files": only each file against the manifest. */
  verified: 'pack' | 'files';
  downloadBytes: number;
  resumedFrom: number;
  downloadMs: number;
  unpackMs: number;
}

export function isPackUrl(ref: string): boolean {
  return /^https?:\/\//i.test(ref);
}

/** What a ref points at, before anything is downloaded. */
export async function resolvePullRef(
  ref: string,
  hub: string | undefined,
  signal?: AbortSignal,
): Promise<{
  url: URL;
  entry: IndexVersion | null;
  defaultTag: string | undefined;
  index: { url: URL; index: RegistryIndex } | null;
}> {
  if (isPackUrl(ref)) return { url: new URL(ref), entry: null, defaultTag: undefined, index: null };
  const pkg = parsePackageRef(ref);
  if (!hub) {
    throw new InvalidArgumentError(`no hub to resolve ${ref} against`, 'hub', {
      hint: 'pass --hub URL or set FORKD_HUB_URL (or pull a pack URL directly)',
    });
  }
  const indexUrl = indexUrlFor(hub);
  const index = parseRegistryIndex(await fetchJson(indexUrl, { signal }), indexUrl.href);
  const entry = resolvePackage(index, pkg, indexUrl.href);
  const name = pkg.name.split('/')[1]!;
  return {
    url: new URL(entry.url, indexUrl),
    entry,
    defaultTag: isValidTag(name) ? name : undefined,
    index: { url: indexUrl, index },
  };
}

export async function pullPack(opts: PullOptions): Promise<PullResult> {
  if (opts.tag !== undefined) assertValidTag(opts.tag);
  const { url, entry, defaultTag, index } = await resolvePullRef(opts.ref, opts.hub, opts.signal);
  const tag = opts.tag ?? defaultTag;
  // Refuse before a big download, not after it.
  if (tag !== undefined && !opts.force && (await opts.store.exists(tag))) {
    throw new AlreadyExistsError(
      `snapshot ${JSON.stringify(tag)} already exists`,
      { kind: 'snapshot', name: tag },
      { hint: 'pass --force to replace it, or --tag to pull under another name' },
    );
  }
  if (entry) assertTrusted(opts.ref, entry, opts.trust);
  if (!entry) {
    opts.onNotice?.(
      `no published sha256 for ${url.href}: every file is verified against the pack's manifest instead`,
    );
  }
  // Every missing ancestor is found on the hub before anything is downloaded.
  const missing = entry?.chain && index ? await missingAncestors(opts, entry.chain, index) : [];
  const ancestors: AncestorResult[] = [];
  for (const ancestor of entry?.chain ?? []) {
    const source = missing.find((m) => m.tag === ancestor.tag);
    if (!source) {
      ancestors.push({ tag: ancestor.tag, installed: false });
      continue;
    }
    opts.onNotice?.(`pulling ancestor ${ancestor.tag} (${source.name}@${source.version}) first`);
    const pulled = await downloadAndUnpack(opts, {
      url: new URL(source.entry.url, index!.url),
      entry: source.entry,
      tag: ancestor.tag,
      force: false,
      expectContentHash: ancestor.content_hash,
    });
    ancestors.push({
      tag: ancestor.tag,
      installed: true,
      from: `${source.name}@${source.version}`,
      downloadBytes: pulled.downloadBytes,
    });
  }
  const pulled = await downloadAndUnpack(opts, {
    url,
    entry,
    tag,
    force: opts.force,
    expectContentHash: entry?.content_hash,
  });
  return { ...pulled, ancestors: [...ancestors, ...pulled.ancestors] };
}

/** The index says who signed it: refuse before a big download what the unpack would refuse after it. */
function assertTrusted(ref: string, entry: IndexVersion, trust: TrustPolicy): void {
  if (!entry.signer && !trust.allowUnsigned) {
    throw new UntrustedPackError(`${ref} is published unsigned`, null, {
      hint: 'pass --allow-unsigned if you trust where it came from',
    });
  }
  if (entry.signer && !trust.keys.has(entry.signer)) throw untrustedSigner(ref, entry.signer);
}

interface AncestorSource {
  tag: string;
  name: string;
  version: string;
  entry: IndexVersion;
}

/**
 * The ancestors of a diff pack not installed here, each with the published
 * version that has its content hash. A tag present with another content hash
 * is another snapshot, and stops the pull: the diff could never be installed
 * over it.
 */
async function missingAncestors(
  opts: PullOptions,
  chain: NonNullable<IndexVersion['chain']>,
  index: { url: URL; index: RegistryIndex },
): Promise<AncestorSource[]> {
  const missing: AncestorSource[] = [];
  for (const ancestor of chain) {
    const wanted = `${ancestor.tag} (content hash ${ancestor.content_hash.slice(0, 16)}…)`;
    if (await opts.store.exists(ancestor.tag)) {
      const local = await snapshotContentHash(opts.store, ancestor.tag);
      if (local === ancestor.content_hash) continue;
      throw new ConflictError(
        `${opts.ref} is a diff over ${wanted}, but the local ${ancestor.tag} has content hash ${local.slice(0, 16)}…`,
        {
          hint: `the local ${ancestor.tag} is another snapshot: remove it (forkd rmi) or pull into another data dir`,
        },
      );
    }
    const found = findByContentHash(index.index, ancestor.content_hash);
    if (!found) {
      throw new NotFoundError(
        `${opts.ref} is a diff over ${wanted}, which is neither installed here nor published on ${index.url.href}`,
        { kind: 'snapshot', name: ancestor.tag },
        {
          hint: `publish ${ancestor.tag} on the hub, or unpack a pack made with forkd pack --with-ancestors`,
        },
      );
    }
    assertTrusted(`${found.name}@${found.version}`, found.entry, opts.trust);
    missing.push({ tag: ancestor.tag, ...found });
  }
  return missing;
}

/** One pack: downloaded (resumably) into the cache, verified, unpacked, and the download removed. */
async function downloadAndUnpack(
  opts: PullOptions,
  pack: {
    url: URL;
    entry: IndexVersion | null;
    tag: string | undefined;
    force: boolean | undefined;
    expectContentHash: string | undefined;
  },
): Promise<PullResult> {
  const { url, entry } = pack;
  const key = entry?.sha256 ?? createHash('sha256').update(url.href).digest('hex');
  const dest = join(opts.store.dataDir.cacheDir, 'downloads', `${key}${PACK_EXTENSION}`);
  const download = await downloadFile({
    url,
    dest,
    expectedSha256: entry?.sha256 ?? null,
    signal: opts.signal,
    onProgress: opts.onProgress,
  });
  if (download.resumedFrom > 0) opts.onNotice?.(`resumed the download at byte ${download.resumedFrom}`);
  try {
    const unpacked = await unpackPack({
      source: createReadStream(download.path),
      sourceName: url.href,
      sourceBytes: download.bytes,
      store: opts.store,
      host: opts.host,
      tag: pack.tag,
      force: pack.force,
      trust: opts.trust,
      expectContentHash: pack.expectContentHash,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
    return {
      ...unpacked,
      url: url.href,
      sha256: download.sha256,
      verified: entry ? 'pack' : 'files',
      downloadBytes: download.bytes,
      resumedFrom: download.resumedFrom,
      downloadMs: download.ms,
      unpackMs: unpacked.ms,
    };
  } finally {
    // Verified packs are not kept: the snapshot is the useful copy. A failed
    // unpack of a verified download would fail again the same way.
    await rm(download.path, { force: true });
  }
}
