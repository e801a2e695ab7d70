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

/** The first entry of a pack, parsed and checked; `fail` makes the error for a bad one. */
export async function readManifestEntry(
  entry: ArchiveEntry,
  source: string,
  fail: (message: string) => Error,
): Promise<PackManifest> {
  if (entry.header.size > PACK_MANIFEST_MAX_BYTES) throw fail('the manifest is too large');
  const chunks: Buffer[] = [];
  for await (const chunk of entry) chunks.push(chunk as Buffer);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw fail('the manifest is not JSON');
  }
  return parsePackManifest(value, source);
}

export async function readPackManifest(path: string): Promise<PackManifest> {
  await packFileSize(path);
  const zstd = zstdDecompress();
  const extract = tar.extract();
  const feeding = pipeline(createReadStream(path), zstd.input).catch(() => {});
  const reading = pipeline(zstd.output, extract).catch(() => {});
  try {
    for await (const entry of extract) {
      if (entry.header.name !== PACK_MANIFEST_ENTRY || entry.header.type !== 'file') break;
      return await readManifestEntry(entry, path, (message) => new CorruptError(`${path}: ${message}`, path));
    }
    throw new CorruptError(`${path} is not a forkd pack (no ${PACK_MANIFEST_ENTRY} first)`, path, {
      hint: 'packs are made by `forkd pack`',
    });
  } finally {
    zstd.kill();
    extract.destroy();
    await Promise.all([feeding, reading, zstd.exited.catch(() => {})]);
  }
}
