// Checks on the kernel and root file system a caller names by path
// (POST /v1/snapshots {kernel, rootfs}, `forkd snapshot --kernel --rootfs`),
// made before anything is copied or booted: a wrong path is an
// InvalidArgumentError (HTTP 400) that names the problem and the fix, not a
// VM that fails two minutes later. Files are only ever opened read-only.
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { hasPvhNote } from './vmlinux.js';

/** A kernel QEMU can boot with -kernel. */
export interface UserKernel {
  path: string;
  format: 'bzImage' | 'elf';
}

/** An ext2/3/4 file system image. */
export interface UserRootfs {
  path: string;
  bytes: number;
  mtimeMs: number;
  /** The file system UUID (hex): with size and mtime, the image's identity. */
  uuid: string;
}

const EXT_MAGIC = 0xef53;
/** The superblock starts at byte 1024; s_magic is at 56 into it, s_uuid at 104. */
const SUPERBLOCK = 1024;

/** Absolute, an existing regular file, readable: the checks both paths share. */
async function checkPath(
  path: unknown,
  field: 'kernel' | 'rootfs',
): Promise<{ size: number; mtimeMs: number }> {
  const what = field === 'kernel' ? 'kernel' : 'root file system';
  if (typeof path !== 'string' || path === '') {
    throw new InvalidArgumentError(`${field} must be a path to the ${what} file`, field);
  }
  if (!isAbsolute(path)) {
    throw new InvalidArgumentError(`${field} must be an absolute path, got ${JSON.stringify(path)}`, field, {
      hint: 'pass the full path of the file on the host forkd runs on',
    });
  }
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    const why = err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code ?? err.message})`;
    throw new InvalidArgumentError(`${field} ${path} ${why}`, field, {
      hint: 'check the path on the host forkd runs on',
    });
  });
  if (!st.isFile()) {
    throw new InvalidArgumentError(`${field} ${path} is not a regular file`, field, {
      hint: `pass the ${what} image file itself`,
    });
  }
  return { size: st.size, mtimeMs: st.mtimeMs };
}

/** The first `n` bytes of a file, read through a read-only descriptor. */
async function readHead(path: string, n: number, field: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY).catch((err: NodeJS.ErrnoException) => {
    throw new InvalidArgumentError(
      `${field} ${path} is not readable by forkd (${err.code ?? err.message})`,
      field,
      {
        hint: `make it readable by uid ${process.getuid?.() ?? '?'}`,
      },
    );
  });
  try {
    const buf = Buffer.alloc(n);
    const { bytesRead } = await fh.read(buf, 0, n, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

/**
 * The kernel release in a kernel image: from a bzImage's setup header
 * (kernel_version), else from the "Linux version X" banner an uncompressed
 * vmlinux carries.
 */
export function kernelVersionOf(image: Buffer): string | null {
  const release = (s: string) => /^(\d+\.\d+[^\s]*)/.exec(s)?.[1] ?? null;
  if (image.length > 0x210 && image.toString('latin1', 0x202, 0x206) === 'HdrS') {
    const offset = image.readUInt16LE(0x20e);
    if (offset !== 0 && offset + 0x200 < image.length) {
      const start = offset + 0x200;
      const end = image.indexOf(0, start);
      return release(image.toString('latin1', start, end === -1 ? start + 256 : end));
    }
    return null;
  }
  const banner = Buffer.from('Linux version ');
  for (let i = image.indexOf(banner); i !== -1; i = image.indexOf(banner, i + 1)) {
    const found = release(image.toString('latin1', i + banner.length, i + banner.length + 128));
    if (found) return found;
  }
  return null;
}

export async function checkKernelFile(path: unknown): Promise<UserKernel> {
  await checkPath(path, 'kernel');
  const file = path as string;
  const head = await readHead(file, 1024, 'kernel');
  if (head.length > 0x206 && head.toString('latin1', 0x202, 0x206) === 'HdrS') {
    return { path: file, format: 'bzImage' };
  }
  if (head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46) {
    // QEMU's microvm enters an ELF kernel only through its PVH note.
    if (!(await hasPvhNote(file))) {
      throw new InvalidArgumentError(
        `kernel ${file} is an ELF vmlinux without a PVH entry note, which QEMU's microvm needs`,
        'kernel',
        { hint: 'pass the bzImage (vmlinuz) of that kernel, or a vmlinux built with CONFIG_PVH=y' },
      );
    }
    return { path: file, format: 'elf' };
  }
  throw new InvalidArgumentError(
    `kernel ${file} is not a kernel image QEMU can boot (neither a bzImage nor an ELF vmlinux)`,
    'kernel',
    { hint: 'pass a bzImage (vmlinuz) or an uncompressed vmlinux' },
  );
}

export async function checkRootfsFile(path: unknown): Promise<UserRootfs> {
  const st = await checkPath(path, 'rootfs');
  const file = path as string;
  const head = await readHead(file, SUPERBLOCK + 1024, 'rootfs');
  if (head.length < SUPERBLOCK + 1024 || head.readUInt16LE(SUPERBLOCK + 56) !== EXT_MAGIC) {
    throw new InvalidArgumentError(
      `rootfs ${file} is not an ext4 file system (no ext2/3/4 superblock magic at byte ${SUPERBLOCK + 56})`,
      'rootfs',
      { hint: 'make one from a directory tree with: mkfs.ext4 -d <dir> <file> <size>' },
    );
  }
  const uuid = head.toString('hex', SUPERBLOCK + 104, SUPERBLOCK + 120);
  return { path: file, bytes: st.size, mtimeMs: st.mtimeMs, uuid };
}
