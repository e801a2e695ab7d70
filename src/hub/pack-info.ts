// Read only the manifest of a pack file: decompress until the first tar
// entry is complete, then stop. `hub publish` and the hub server use it to
// check an upload is a pack and to fill the index entry.
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { stat } from 'node:fs/promises';
import { CorruptError, NotFoundError } from '../errors.js';
import {
  PACK_MANIFEST_ENTRY,
  PACK_MANIFEST_MAX_BYTES,
  parsePackManifest,
  type PackManifest,
} from './pack-manifest.js';
import { zstdDecompress } from './zstd.js';
import { PACK_SIGNATURE_ENTRY, parsePackSignature, type PackSignature } from './signing.js';
import type { ArchiveEntry } from './tar-entries.js';

/** The size of a pack file, or a NotFoundError naming it. */
export async function packFileSize(path: string): Promise<number> {
  const info = await stat(path).catch(() => null);
  if (!info?.isFile()) {
    throw new NotFoundError(
      `pack file ${path} not found`,
      { kind: 'file', name: path },
      {
        hint: 'make one with `forkd pack --tag T -o FILE`',
      },
    );
  }
  return info.size;
}

/** A pack's manifest as parsed, and the exact bytes a signature covers. */
export interface ManifestEntry {
  manifest: PackManifest;
  bytes: Buffer;
}

async function entryBytes(
  entry: ArchiveEntry,
  limit: number,
  fail: (message: string) => Error,
  what: string,
) {
  if (entry.header.size > limit) throw fail(`the ${what} is too large`);
  const chunks: Buffer[] = [];
  for await (const chunk of entry) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The first entry of a pack, parsed and checked; `fail` makes the error for a bad one. */
export async function readManifestEntry(
  entry: ArchiveEntry,
  source: string,
  fail: (message: string) => Error,
): Promise<ManifestEntry> {
  const bytes = await entryBytes(entry, PACK_MANIFEST_MAX_BYTES, fail, 'manifest');
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw fail('the manifest is not JSON');
  }
  return { manifest: parsePackManifest(value, source), bytes };
}

/** The signature entry (the pack's second); `fail` makes the error for a malformed one. */
export async function readSignatureEntry(
  entry: ArchiveEntry,
  fail: (message: string) => Error,
): Promise<PackSignature> {
  const bytes = await entryBytes(entry, 4096, fail, 'signature');
  let value: unknown = null;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    // reported below
  }
  const signature = parsePackSignature(value);
  if (!signature) throw fail(`its ${PACK_SIGNATURE_ENTRY} is not a forkd pack signature`);
  return signature;
}

/** A pack file's manifest and signature (null when unsigned), read without unpacking the rest. */
export async function readPackManifest(
  path: string,
): Promise<ManifestEntry & { signature: PackSignature | null }> {
  await packFileSize(path);
  const zstd = zstdDecompress();
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(path), zstd.input).catch(() => {});
  const reading = pipeline(zstd.output, extract).catch(() => {});
  const fail = (message: string) => new CorruptError(`${path}: ${message}`, path);
  try {
    let head: ManifestEntry | null = null;
    for await (const entry of extract) {
      if (entry.header.type !== 'file') break;
      if (head === null) {
        if (entry.header.name !== PACK_MANIFEST_ENTRY) break;
        head = await readManifestEntry(entry, path, fail);
        continue;
      }
      const signature =
        entry.header.name === PACK_SIGNATURE_ENTRY ? await readSignatureEntry(entry, fail) : null;
      return { ...head, signature };
    }
    if (head) return { ...head, signature: null };
    throw new CorruptError(`${path} is not a forkd pack (no ${PACK_MANIFEST_ENTRY} first)`, path, {
      hint: 'packs are made by `forkd pack`',
    });
  } finally {
    zstd.kill();
    extract.destroy();
    await Promise.all([feeding, reading, zstd.exited.catch(() => {})]);
  }
}
