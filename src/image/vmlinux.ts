// Extract the uncompressed ELF `vmlinux` from a packaged bzImage (`vmlinuz`)
// the way the kernel's scripts/extract-vmlinux does: find the xz stream by its
// magic, decompress from there (ignoring what follows the stream), and keep the
// first candidate that is an ELF with the PVH entry note QEMU's microvm needs.
import { launch } from '../util/launcher.js';
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readFile, rm } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { CorruptError } from '../errors.js';
import { abortReason, throwIfAborted } from '../util/abort.js';
import { missingProgram } from '../util/run.js';

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
/** XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point. */
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** Byte offsets of every xz stream magic in `buf`. */
export function findXzOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  for (let i = buf.indexOf(XZ_MAGIC); i !== -1; i = buf.indexOf(XZ_MAGIC, i + 1)) out.push(i);
  return out;
}

/** Does this ELF image (its first bytes and note segments) carry a PVH entry note? */
export async function hasPvhNote(elfPath: string): Promise<boolean> {
  const fh = await open(elfPath, 'r');
  try {
    const ehdr = Buffer.alloc(64);
    const { bytesRead } = await fh.read(ehdr, 0, 64, 0);
    if (bytesRead < 64 || ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2 || ehdr[5] !== 1) {
      return false; // not a little-endian ELF64
    }
    const phoff = Number(ehdr.readBigUInt64LE(32));
    const phentsize = ehdr.readUInt16LE(54);
    const phnum = ehdr.readUInt16LE(56);
    const phdrs = Buffer.alloc(phentsize * phnum);
    await fh.read(phdrs, 0, phdrs.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const ph = phdrs.subarray(i * phentsize);
      if (ph.readUInt32LE(0) !== 4) continue; // PT_NOTE
      const offset = Number(ph.readBigUInt64LE(8));
      const size = Number(ph.readBigUInt64LE(32));
      const notes = Buffer.alloc(size);
      await fh.read(notes, 0, size, offset);
      if (notesHavePvh(notes)) return true;
    }
    return false;
  } finally {
    await fh.close();
  }
}

function notesHavePvh(notes: Buffer): boolean {
  const align4 = (n: number) => (n + 3) & ~3;
  let p = 0;
  while (p + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(p);
    const descsz = notes.readUInt32LE(p + 4);
    const type = notes.readUInt32LE(p + 8);
    const name = notes
      .subarray(p + 12, p + 12 + namesz)
      .toString('latin1')
      .replace(/\0+$/, '');
    if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
    p += 12 + align4(namesz) + align4(descsz);
  }
  return false;
}

/** Decompress the xz stream that starts at `offset` of `src` into `dest`. */
async function xzFrom(src: string, offset: number, dest: string, signal?: AbortSignal): Promise<boolean> {
  const child = launch(['xz', '-dc', '--single-stream'], { stdio: ['pipe', 'pipe', 'ignore'] });
  const { stdin, stdout } = child;
  if (!stdin || !stdout) throw new Error('xz: pipes missing');
  const onAbort = () => child.kill('SIGTERM');
  signal?.addEventListener('abort', onAbort, { once: true });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? missingProgram('xz') : err),
    );
    child.on('close', (code) => resolve(code));
  });
  try {
    // xz stops reading after the stream; the rest of the input is garbage it
    // never consumes, so an EPIPE on its stdin is expected.
    const feed = pipeline(createReadStream(src, { start: offset }), stdin).catch(() => {});
    const drain = pipeline(stdout, createWriteStream(dest));
    const [code] = await Promise.all([exited, drain, feed]);
    return code === 0;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/** Write the uncompressed vmlinux of `vmlinuzPath` to `outPath`, verified to have a PVH note. */
export async function extractVmlinux(
  vmlinuzPath: string,
  outPath: string,
  signal?: AbortSignal,
): Promise<void> {
  const image = await readFile(vmlinuzPath);
  const offsets = findXzOffsets(image);
  for (const offset of offsets) {
    throwIfAborted(signal);
    const ok = await xzFrom(vmlinuzPath, offset, outPath, signal).catch((err: unknown) => {
      if (signal?.aborted) throw abortReason(signal);
      throw err;
    });
    if (ok && (await hasPvhNote(outPath))) return;
  }
  await rm(outPath, { force: true });
  throw new CorruptError(
    `no xz-compressed ELF kernel with a PVH entry note found in ${vmlinuzPath} (${offsets.length} xz candidates)`,
    vmlinuzPath,
  );
}
