// Writing tar entries with tar-stream: regular files only, fixed owner and
// time (a pack of the same snapshot is the same bytes), and the GNU sparse
// 1.0 pax headers for files stored without their zero blocks.
import type { Extract, Header, Pack } from 'tar-stream';
import type { Extent } from './sparse.js';
import { encodeSparseMap } from './sparse.js';

/** An entry header as forkd writes it, pax records included. */
export type PaxHeaders = Partial<Header> & { name: string; pax?: Record<string, string> };

/** One entry read from an archive: its header and its data. */
export type ArchiveEntry = Extract extends AsyncIterable<infer E> ? E : never;

/** The pax records of an entry read from an archive (string values only). */
export function paxRecords(header: Header): Record<string, string> {
  const pax = header.pax;
  if (typeof pax !== 'object' || pax === null) return {};
  return Object.fromEntries(
    Object.entries(pax as Record<string, unknown>).filter(
      (kv): kv is [string, string] => typeof kv[1] === 'string',
    ),
  );
}

export interface EntryFile {
  name: string;
  size: number;
  mtime: Date;
}

/** Write one entry's data with backpressure; resolves once tar-stream has taken it all. */
export async function writeEntry(
  pack: Pack,
  header: PaxHeaders,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
): Promise<void> {
  let settle: (err?: Error | null) => void = () => {};
  const written = new Promise<void>((resolve, reject) => {
    settle = (err) => (err ? reject(err) : resolve());
  });
  written.catch(() => {}); // awaited below; a destroyed archive must not wait for a drain that never comes
  const sink = pack.entry(header, (err) => settle(err ?? null));
  sink.on('error', () => {}); // reported through the entry callback
  try {
    for await (const chunk of chunks) {
      if (!sink.write(chunk)) {
        await Promise.race([new Promise<void>((resolve) => sink.once('drain', () => resolve())), written]);
      }
    }
    sink.end(undefined);
  } catch (err) {
    sink.destroy(err as Error);
  }
  await written;
}

function baseHeader(file: EntryFile): PaxHeaders {
  return { name: file.name, size: file.size, mode: 0o644, mtime: file.mtime, uid: 0, gid: 0, type: 'file' };
}

export function denseHeader(file: EntryFile): PaxHeaders {
  return baseHeader(file);
}

/** The header and map of a sparse entry; the data that follows is the extents' bytes, in order. */
export function sparseHeader(
  file: EntryFile,
  extents: readonly Extent[],
  dataBytes: number,
): { header: PaxHeaders; map: Buffer } {
  const map = encodeSparseMap(extents, file.size);
  return {
    header: {
      ...baseHeader(file),
      name: `GNUSparseFile.0/${file.name}`,
      size: map.length + dataBytes,
      pax: {
        'GNU.sparse.major': '1',
        'GNU.sparse.minor': '0',
        'GNU.sparse.name': file.name,
        'GNU.sparse.realsize': String(file.size),
      },
    },
    map,
  };
}
