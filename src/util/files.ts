// Small filesystem helpers shared by the store, the engine and the image builder.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, copyFile, link, open, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Hard-link when possible (same filesystem: free), copy otherwise. */
export async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch {
    await copyFile(from, to);
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Logical size and bytes actually allocated (sparse files allocate less). */
export async function fileSizes(path: string): Promise<{ logicalBytes: number; physicalBytes: number }> {
  const s = await stat(path);
  return { logicalBytes: s.size, physicalBytes: s.blocks * 512 };
}

/** Bytes allocated by the files directly in `dir` (0 when it is gone). */
export async function dirPhysicalBytes(dir: string): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const sizes = await Promise.all(
    names.map((n) =>
      fileSizes(join(dir, n)).then(
        (s) => s.physicalBytes,
        () => 0,
      ),
    ),
  );
  return sizes.reduce((a, b) => a + b, 0);
}

export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Flush files (and the directory holding them) to disk, all at once. Before
 * a staged snapshot is renamed into place: after a crash a "ready" snapshot
 * must not turn out to hold zeros where its data should be.
 */
export async function syncToDisk(dir: string, names: readonly string[]): Promise<void> {
  await Promise.all(
    [...names.map((name) => join(dir, name)), dir].map(async (path) => {
      const handle = await open(path, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }),
  );
}
