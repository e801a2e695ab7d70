// Editing a pack as a forger would: its manifest and any file changed, each
// changed file's manifest line following it (a carried ancestor's too), and
// the archive compressed again. Tests use it to make packs that are
// consistent on the surface and wrong underneath.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { PACK_MANIFEST_ENTRY, splitEntryName, type PackManifest } from '../../src/hub/pack-manifest.js';
import { denseHeader, writeEntry, type PaxHeaders } from '../../src/hub/tar-entries.js';

export function zstd(args: string[], input: Buffer): Buffer {
  const r = spawnSync('zstd', args, { input, maxBuffer: 1 << 30 });
  assert.equal(r.status, 0, r.stderr?.toString());
  return r.stdout;
}

/**
 * A copy of an unsigned pack with its manifest, and any dense file, changed
 * (the manifest line of a changed file follows it, as a consistent forger's would).
 */
export async function editPack(
  from: string,
  to: string,
  edit: {
    manifest?: (m: PackManifest) => void;
    files?: Record<string, (data: Buffer) => Buffer>;
    /** The entries after the manifest, by name, in the order to write them. */
    order?: (names: string[]) => string[];
  },
): Promise<void> {
  const archive = zstd(['-d', '--long=29', '-c'], await readFile(from));
  const entries: { header: PaxHeaders; body: Buffer }[] = [];
  const extract = tar.extract();
  const reading = (async () => {
    for await (const entry of extract) {
      const chunks: Buffer[] = [];
      for await (const chunk of entry) chunks.push(chunk as Buffer);
      entries.push({ header: entry.header as PaxHeaders, body: Buffer.concat(chunks) });
    }
  })();
  Readable.from([archive]).pipe(extract);
  await reading;
  const manifest = JSON.parse(entries[0]!.body.toString()) as PackManifest;
  for (const [name, change] of Object.entries(edit.files ?? {})) {
    const entry = entries.find((e) => (e.header.pax?.['GNU.sparse.name'] ?? e.header.name) === name);
    assert.ok(entry, `no entry ${name}`);
    entry.body = change(logicalContent(entry));
    entry.header = denseHeader({ name, size: entry.body.length, mtime: new Date(0) });
    const { link, path } = splitEntryName(name);
    const line = (link === null ? manifest.files : manifest.chain[link]!.files).find((f) => f.path === path)!;
    line.size = line.stored_bytes = entry.body.length;
    line.sha256 = createHash('sha256').update(entry.body).digest('hex');
  }
  edit.manifest?.(manifest);
  const manifestBytes = Buffer.from(JSON.stringify(manifest));
  entries[0] = {
    header: denseHeader({ name: PACK_MANIFEST_ENTRY, size: manifestBytes.length, mtime: new Date(0) }),
    body: manifestBytes,
  };
  const pack = tar.pack();
  const collected = (async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of pack) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  })();
  const nameOf = (e: { header: PaxHeaders }) => e.header.pax?.['GNU.sparse.name'] ?? e.header.name;
  if (edit.order) {
    const rest = entries.slice(1);
    const names = edit.order(rest.map(nameOf));
    entries.splice(1, rest.length, ...names.map((n) => rest.find((e) => nameOf(e) === n)!));
  }
  for (const { header, body } of entries) await writeEntry(pack, header, [body]);
  pack.finalize();
  const tarBytes = await collected;
  await writeFile(to, zstd(['-c', '-q'], tarBytes));
}

/** An entry's file content: a GNU sparse 1.0 entry's data laid out over its map. */
function logicalContent(entry: { header: PaxHeaders; body: Buffer }): Buffer {
  const pax = entry.header.pax;
  if (!pax?.['GNU.sparse.major']) return entry.body;
  const out = Buffer.alloc(Number(pax['GNU.sparse.realsize']));
  const numbers: number[] = [];
  let at = 0;
  while (numbers.length === 0 || numbers.length < 1 + 2 * numbers[0]!) {
    const end = entry.body.indexOf(10, at);
    numbers.push(Number(entry.body.subarray(at, end).toString()));
    at = end + 1;
  }
  let data = Math.ceil(at / 512) * 512;
  for (let i = 1; i < numbers.length; i += 2) {
    const [offset, length] = [numbers[i]!, numbers[i + 1]!];
    entry.body.copy(out, offset, data, data + length);
    data += length;
  }
  return out;
}
