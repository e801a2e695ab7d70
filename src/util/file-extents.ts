// Where a sparse file holds data: its extents, from `filefrag -e` (the
// FIEMAP ioctl; Node has no SEEK_DATA). Comparing two RAM files then reads
// only what either of them holds.
import { throwIfAborted } from './abort.js';
import { run } from './run.js';

export interface Extent {
  offset: number;
  length: number;
}

/**
 * The runs of a file that may hold data (the rest is holes), from the
 * filesystem's extent map. Node has no SEEK_DATA; `filefrag` (e2fsprogs)
 * reads the FIEMAP ioctl, syncing first so delayed allocations are counted.
 * Where it cannot say (tmpfs, no filefrag) the whole file is read: slower,
 * never wrong.
 */
export async function dataExtents(
  path: string,
  size: number,
  signal: AbortSignal | undefined,
): Promise<Extent[]> {
  if (size === 0) return [];
  try {
    const { stdout } = await run(['filefrag', '-e', '-s', '--', path], { signal });
    const extents = parseFilefrag(stdout, size);
    if (extents) return extents;
  } catch {
    throwIfAborted(signal); // any other failure: read the whole file
  }
  return [{ offset: 0, length: size }];
}

/** Extents from `filefrag -e` output, or null when it is not what was expected. */
function parseFilefrag(stdout: string, size: number): Extent[] | null {
  // "File size of X is N (M blocks of B bytes)": offsets are counted in B.
  const unit = /\(\d+ blocks? of (\d+) bytes\)\s*$/m.exec(stdout);
  const blockBytes = Number(unit?.[1]);
  // The closing "X: N extents found" line says the map was read to the end.
  if (!unit || !(blockBytes > 0) || !/ \d+ extents? found\s*$/.test(stdout)) return null;
  const extents: Extent[] = [];
  for (const match of stdout.matchAll(/^\s*\d+:\s*(\d+)\.\.\s*(\d+):/gm)) {
    const offset = Number(match[1]) * blockBytes;
    const end = Math.min(size, (Number(match[2]) + 1) * blockBytes);
    if (end > offset) extents.push({ offset, length: end - offset });
  }
  return extents;
}
