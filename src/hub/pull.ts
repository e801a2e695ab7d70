// `forkd pull`: a package name (resolved through a hub's index) or a pack
// URL, downloaded with resume into the data dir's download cache, verified,
// and unpacked into the snapshot store. The download is deleted once its
// snapshot is installed.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, AlreadyExistsError, UntrustedPackError } from '../errors.js';
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
  resolvePackage,
  type IndexVersion,
} from './registry-index.js';
import { untrustedSigner, type TrustPolicy } from './signing.js';
import { unpackPack, type UnpackResult } from './unpack.js';

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
): Promise<{ url: URL; entry: IndexVersion | null; defaultTag: string | undefined }> {
  if (isPackUrl(ref)) return { url: new URL(ref), entry: null, defaultTag: undefined };
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
  return { url: new URL(entry.url, indexUrl), entry, defaultTag: isValidTag(name) ? name : undefined };
}

export async function pullPack(opts: PullOptions): Promise<PullResult> {
  if (opts.tag !== undefined) assertValidTag(opts.tag);
  const { url, entry, defaultTag } = await resolvePullRef(opts.ref, opts.hub, opts.signal);
  const tag = opts.tag ?? defaultTag;
  // Refuse before a big download, not after it.
  if (tag !== undefined && !opts.force && (await opts.store.exists(tag))) {
    throw new AlreadyExistsError(
      `snapshot ${JSON.stringify(tag)} already exists`,
      { kind: 'snapshot', name: tag },
      { hint: 'pass --force to replace it, or --tag to pull under another name' },
    );
  }
  // The index says who signed it: refuse before a big download what the unpack would refuse after it.
  if (entry && !entry.signer && !opts.trust.allowUnsigned) {
    throw new UntrustedPackError(`${opts.ref} is published unsigned`, null, {
      hint: 'pass --allow-unsigned if you trust where it came from',
    });
  }
  if (entry?.signer && !opts.trust.keys.has(entry.signer)) throw untrustedSigner(opts.ref, entry.signer);
  if (!entry) {
    opts.onNotice?.(
      `no published sha256 for ${url.href}: every file is verified against the pack's manifest instead`,
    );
  }
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
      tag,
      force: opts.force,
      trust: opts.trust,
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
