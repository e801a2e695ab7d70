// A deterministic writer for the "newc" cpio format the kernel unpacks as an
// initramfs: fixed mtimes, owners and inode numbers, parents before children,
// so the same inputs always give the same bytes. Device nodes (/dev/console)
// need no mknod on the host.

export type CpioEntry =
  | { type: 'dir'; path: string; mode?: number }
  | { type: 'file'; path: string; data: Uint8Array; mode?: number }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'char'; path: string; major: number; minor: number; mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

function normalize(path: string): string {
  const p = path.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new Error(`cpio: bad path '${path}'`);
  }
  return p;
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`cpio: field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function header(
  fields: { ino: number; mode: number; nlink: number; size: number; rdevMajor: number; rdevMinor: number },
  name: string,
): Buffer {
  const nameBytes = Buffer.from(name + '\0', 'utf8');
  const head =
    '070701' +
    [
      fields.ino,
      fields.mode,
      0, // uid
      0, // gid
      fields.nlink,
      0, // mtime
      fields.size,
      0, // devmajor
      0, // devminor
      fields.rdevMajor,
      fields.rdevMinor,
      nameBytes.length,
      0, // check
    ]
      .map(hex8)
      .join('');
  return Buffer.concat([Buffer.from(head, 'ascii'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length))]);
}

/**
 * Serialise entries as a newc archive. Entries are sorted by path (a parent
 * sorts before its children); a duplicate path is an error; missing parent
 * directories are added with mode 0755.
 */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const byPath = new Map<string, CpioEntry>();
  for (const e of entries) {
    const path = normalize(e.path);
    if (byPath.has(path)) throw new Error(`cpio: duplicate path '${path}'`);
    byPath.set(path, { ...e, path });
  }
  for (const path of [...byPath.keys()]) {
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const existing = byPath.get(parent);
      if (!existing) byPath.set(parent, { type: 'dir', path: parent });
      else if (existing.type !== 'dir') throw new Error(`cpio: '${parent}' is not a directory`);
    }
  }
  // Compare by path components so "a/b" follows "a" directly (not after "a-c").
  const sorted = [...byPath.values()].sort((a, b) => {
    const x = a.path.split('/');
    const y = b.path.split('/');
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
    }
    return x.length - y.length;
  });
  const parts: Buffer[] = [];
  let ino = 1;
  for (const e of sorted) {
    let mode: number;
    let data: Uint8Array = new Uint8Array(0);
    let rdevMajor = 0;
    let rdevMinor = 0;
    switch (e.type) {
      case 'dir':
        mode = S_IFDIR | (e.mode ?? 0o755);
        break;
      case 'file':
        mode = S_IFREG | (e.mode ?? 0o644);
        data = e.data;
        break;
      case 'symlink':
        mode = S_IFLNK | 0o777;
        data = Buffer.from(e.target, 'utf8');
        break;
      case 'char':
        mode = S_IFCHR | (e.mode ?? 0o600);
        rdevMajor = e.major;
        rdevMinor = e.minor;
        break;
    }
    const nlink = e.type === 'dir' ? 2 : 1;
    parts.push(header({ ino: ino++, mode, nlink, size: data.length, rdevMajor, rdevMinor }, e.path));
    parts.push(Buffer.from(data.buffer, data.byteOffset, data.length), Buffer.alloc(pad4(data.length)));
  }
  parts.push(header({ ino: 0, mode: 0, nlink: 1, size: 0, rdevMajor: 0, rdevMinor: 0 }, 'TRAILER!!!'));
  return Buffer.concat(parts);
}
