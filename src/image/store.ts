// The on-disk image store: <dataDir>/images/<recipe>-<hash16>/{image.json,
// vmlinux, initrd.img, rootfs.ext4?}. image.json holds paths relative to the
// image directory so a data directory can move; readers rebuild absolute ones.
// Builds happen in images/.tmp-* and are renamed into place.
import { readFile, readdir, rename } from 'node:fs/promises';
import { basename, join, resolve, sep } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '../errors.js';
import { exists, removeTree } from './fsutil.js';
import type { GuestImage, RuntimeConfig, WarmupPlan } from './types.js';

export const IMAGE_JSON = 'image.json';

/** What image.json stores (paths relative to the image directory). */
export interface ImageJson {
  format: 1;
  recipe: string;
  contentHash: string;
  kernel: string;
  kernelVersion: string;
  kernelPackageVersion: string;
  initrd: string;
  rootfs: string | null;
  kernelCmdline: string;
  runtime: RuntimeConfig | null;
  memoryMib: number;
  vcpus?: number;
  warmup?: WarmupPlan;
  createdAt: string;
  initrdBytes: number;
  rootfsBytes: number | null;
  modules: string[];
}

export function imagesDir(dataDir: string): string {
  return join(dataDir, 'images');
}

export function imageDirName(recipe: string, contentHash: string): string {
  return `${recipe}-${contentHash.slice(0, 16)}`;
}

export function toGuestImage(dir: string, json: ImageJson): GuestImage {
  return {
    recipe: json.recipe,
    contentHash: json.contentHash,
    dir,
    kernelPath: join(dir, json.kernel),
    kernelVersion: json.kernelVersion,
    initrdPath: join(dir, json.initrd),
    rootfsPath: json.rootfs === null ? null : join(dir, json.rootfs),
    kernelCmdline: json.kernelCmdline,
    runtime: json.runtime,
    memoryMib: json.memoryMib,
    ...(json.vcpus ? { vcpus: json.vcpus } : {}),
    ...(json.warmup ? { warmup: json.warmup } : {}),
    createdAt: json.createdAt,
  };
}

/** The image in `dir`, or null when it is not a complete image. */
export async function readImage(dir: string): Promise<GuestImage | null> {
  try {
    const json = JSON.parse(await readFile(join(dir, IMAGE_JSON), 'utf8')) as ImageJson;
    if (json.format !== 1 || typeof json.recipe !== 'string') return null;
    const image = toGuestImage(dir, json);
    for (const p of [image.kernelPath, image.initrdPath, image.rootfsPath]) {
      if (p !== null && !(await exists(p))) return null;
    }
    return image;
  } catch {
    return null;
  }
}

/** Every complete image, newest first. */
export async function listImages(opts: { dataDir: string }): Promise<GuestImage[]> {
  const root = imagesDir(opts.dataDir);
  const names = await readdir(root).catch(() => [] as string[]);
  const out: GuestImage[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const image = await readImage(join(root, name));
    if (image) out.push(image);
  }
  return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

/** The newest built image of a recipe, without building anything. */
export async function findImage(recipe: string, opts: { dataDir: string }): Promise<GuestImage | null> {
  return (await listImages(opts)).find((i) => i.recipe === recipe) ?? null;
}

/**
 * Remove one image (by its directory or directory name) or every image of a
 * recipe (by recipe name). The directory is renamed away first, so a reader
 * never sees half an image.
 */
export async function removeImage(recipeOrDir: string, opts: { dataDir: string }): Promise<void> {
  const root = resolve(imagesDir(opts.dataDir));
  const images = await listImages(opts);
  let victims: GuestImage[];
  if (recipeOrDir.includes('/')) {
    const dir = resolve(recipeOrDir);
    if (!dir.startsWith(root + sep) || dir.slice(root.length + 1).includes(sep)) {
      throw new InvalidArgumentError(`${recipeOrDir} is not an image directory under ${root}`, 'image');
    }
    victims = images.filter((i) => resolve(i.dir) === dir);
  } else {
    victims = images.filter((i) => basename(i.dir) === recipeOrDir);
    if (victims.length === 0) victims = images.filter((i) => i.recipe === recipeOrDir);
  }
  if (victims.length === 0) {
    throw new NotFoundError(`no image '${recipeOrDir}'`, { kind: 'image', name: recipeOrDir });
  }
  for (const image of victims) {
    const doomed = join(root, `.tmp-rm-${basename(image.dir)}-${process.pid}-${Date.now()}`);
    await rename(image.dir, doomed);
    await removeTree(doomed);
  }
}
