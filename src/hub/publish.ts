// `forkd hub publish` and the hub server's uploads: put a pack file into a
// hub directory (packs/<owner>/<name>/<version>.forkd.tar.zst) and record it
// in the directory's index.json. The index is rewritten atomically under a
// lock, so concurrent publishers and readers never see half of it.
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AlreadyExistsError, InvalidArgumentError } from '../errors.js';
import { lockFileWaiting } from '../snapshot/lock.js';
import { sha256File } from '../util/files.js';
import { carriesAncestors, isDiffPack, PACK_EXTENSION, type PackManifest } from './pack-manifest.js';
import { readPackManifest } from './pack-info.js';
import {
  INDEX_FILE,
  LATEST,
  PACKAGE_NAME,
  PACKAGE_VERSION,
  readIndexFile,
  withVersion,
  writeIndexFile,
  type IndexVersion,
} from './registry-index.js';

export interface PublishOptions {
  hubDir: string;
  /** The pack file to publish. */
  file: string;
  name: string;
  /** Default: the pack's creation time, e.g. 20261125T024712Z. */
  version?: string | undefined;
  /** Move the file instead of copying it (an upload already in the hub dir). */
  move?: boolean | undefined;
  /** Replace a version that is already published. */
  force?: boolean | undefined;
  /** Known already (an upload hashed it as it arrived). */
  sha256?: string | undefined;
}

export interface PublishResult {
  name: string;
  version: string;
  entry: IndexVersion;
  manifest: PackManifest;
  path: string;
}

export function packRelativePath(name: string, version: string): string {
  return `packs/${name}/${version}${PACK_EXTENSION}`;
}

export function defaultVersion(manifest: PackManifest): string {
  return timeVersion(manifest.created_at);
}

/** A version label from an ISO time: 2026-11-25T02:47:12.448Z is 20261125T024712Z. */
export function timeVersion(iso: string): string {
  return iso.replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function checkPackageName(name: string, version: string | undefined): void {
  if (!PACKAGE_NAME.test(name)) {
    throw new InvalidArgumentError(`invalid package name ${JSON.stringify(name)}`, 'name', {
      hint: 'name packages owner/name (lower case, digits, . _ -)',
    });
  }
  if (version !== undefined && (!PACKAGE_VERSION.test(version) || version === LATEST)) {
    throw new InvalidArgumentError(`invalid version ${JSON.stringify(version)}`, 'version', {
      hint: `versions are 1-64 characters from A-Z a-z 0-9 . _ + - (and not "${LATEST}")`,
    });
  }
}

export async function publishPack(opts: PublishOptions): Promise<PublishResult> {
  checkPackageName(opts.name, opts.version);
  const { manifest, signature } = await readPackManifest(opts.file);
  const version = opts.version ?? defaultVersion(manifest);
  checkPackageName(opts.name, version);
  const relative = packRelativePath(opts.name, version);
  const target = join(opts.hubDir, relative);
  const lock = await lockFileWaiting(join(opts.hubDir, `.${INDEX_FILE}.lock`), `hub index in ${opts.hubDir}`);
  try {
    const index = await readIndexFile(join(opts.hubDir, INDEX_FILE));
    if (index.packages[opts.name]?.versions[version] && !opts.force) {
      throw new AlreadyExistsError(
        `${opts.name}@${version} is already published`,
        { kind: 'package version', name: `${opts.name}@${version}` },
        { hint: 'publish under another --version, or pass --force to replace it' },
      );
    }
    await mkdir(join(opts.hubDir, 'packs', opts.name), { recursive: true });
    if (opts.move) await rename(opts.file, target);
    else {
      const temp = `${target}.${randomBytes(4).toString('hex')}.tmp`;
      await copyFile(opts.file, temp);
      await rename(temp, target).catch(async (err: unknown) => {
        await rm(temp, { force: true });
        throw err;
      });
    }
    const entry: IndexVersion = {
      url: relative,
      sha256: opts.sha256 ?? (await sha256File(target)),
      size_bytes: (await stat(target)).size,
      memory_mib: manifest.machine.memory_mib,
      base_image: `${manifest.base_image.recipe}@${manifest.base_image.content_hash.slice(0, 16)}`,
      created_at: manifest.created_at,
      ...(signature ? { signer: signature.key_id, signature: signature.signature } : {}),
      ...(manifest.content_hash ? { content_hash: manifest.content_hash } : {}),
      ...(isDiffPack(manifest) && !carriesAncestors(manifest)
        ? { chain: manifest.chain.map((l) => ({ tag: l.tag, content_hash: l.content_hash })) }
        : {}),
    };
    await writeIndexFile(
      join(opts.hubDir, INDEX_FILE),
      withVersion(index, opts.name, version, entry, manifest.description),
    );
    return { name: opts.name, version, entry, manifest, path: target };
  } finally {
    await lock.release();
  }
}
