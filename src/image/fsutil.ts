// File-system helpers for building images: safe recursive removal (unmounts
// anything a crashed bootstrap left mounted inside the tree first, and never
// crosses into another file system), atomic small-file writes, sha256 of files.
import { pathExists, sha256File } from '../util/files.js';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { resolve, sep } from 'node:path';
import { run } from '../util/run.js';

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const root = resolve(dir);
  let text: string;
  try {
    text = await readFile('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (!field) continue;
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    const point = field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (point === root || point.startsWith(root + sep)) out.push(point);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** rm -rf that first lazily unmounts whatever is mounted inside the tree. */
export async function removeTree(dir: string): Promise<void> {
  if (!(await pathExists(dir))) return;
  for (const point of await mountsUnder(dir)) {
    await run(['umount', '-l', point]).catch(() => {});
  }
  try {
    await run(['rm', '-rf', '--one-file-system', dir]);
  } catch {
    await rm(dir, { recursive: true, force: true });
  }
}

export { pathExists as exists, sha256File };

/** Write a file via a temporary sibling and rename, so readers never see it half-written. */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data, { mode });
  await rename(tmp, path);
}

export async function treeBytes(dir: string): Promise<number> {
  const { stdout } = await run(['du', '-sb', dir]);
  return Number(stdout.split('\t')[0] ?? 0);
}
