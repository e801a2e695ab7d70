// buildImage: recipe -> guest image (kernel + initramfs + optional ext4 root).
// Hashes the inputs first and returns the cached image when it exists, so a
// rebuild with nothing changed costs a few file hashes. Otherwise builds in
// images/.tmp-* and renames into place; any failure removes the partial output.
import { link, copyFile, mkdir, mkdtemp, readdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { throwIfAborted } from '../util/abort.js';
import { exists, removeTree } from './fsutil.js';
import { contentHash, hashSources } from './hash.js';
import { buildInitramfs } from './initramfs.js';
import { ensureKernel } from './kernel.js';
import { hostTscKhz } from './host.js';
import { getRecipe, guestKernelCmdline, recipeHasRootfs } from './recipes.js';
import { buildRootfs, ensureRootfsTree } from './rootfs.js';
import { locateSources, type SourceOverrides } from './sources.js';
import { IMAGE_JSON, imageDirName, imagesDir, readImage, toGuestImage, type ImageJson } from './store.js';
import type { GuestImage, ProgressFn, Recipe } from './types.js';
import { addRecipeExtras, ensureNpmModules, recipeHashInput } from './recipe-extras.js';

export interface BuildImageOptions extends SourceOverrides {
  dataDir: string;
  /** Rebuild even if an image with the same content hash exists, and re-ask apt for the kernel. */
  force?: boolean | undefined;
  onProgress?: ProgressFn | undefined;
  signal?: AbortSignal | undefined;
  /** Debian main archive for mmdebstrap (default: the host's apt mirror). */
  mirror?: string | undefined;
  /** Host TSC rate for tsc_early_khz= (default: read from /proc/cpuinfo; null: omit). */
  tscKhz?: number | null | undefined;
}

/** Leftover build directories older than this are from crashed builds. */
const STALE_TMP_MS = 24 * 3600 * 1000;

async function cleanStaleTmp(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith('.tmp-')) continue;
    const st = await stat(join(dir, name)).catch(() => null);
    if (st && Date.now() - st.mtimeMs > STALE_TMP_MS) await removeTree(join(dir, name)).catch(() => {});
  }
}

/** Build (or find built) the image of a built-in recipe by name, or of a recipe read from a file. */
export async function buildImage(recipeRef: string | Recipe, opts: BuildImageOptions): Promise<GuestImage> {
  const { dataDir, onProgress, signal } = opts;
  const recipe = typeof recipeRef === 'string' ? getRecipe(recipeRef) : recipeRef;
  const hasRootfs = recipeHasRootfs(recipe);
  throwIfAborted(signal);

  const sources = await locateSources(opts, recipe.runtime !== null);
  const kernel = await ensureKernel({ dataDir, refresh: opts.force, onProgress, signal });
  // The host TSC rate is part of the command line, hence of the hash: an image
  // built on another host (another TSC rate) is rebuilt here.
  const kernelCmdline = guestKernelCmdline(recipe, {
    tscKhz: opts.tscKhz === undefined ? hostTscKhz() : opts.tscKhz,
  });
  const hash = contentHash({
    recipe: await recipeHashInput(recipe),
    kernelCmdline,
    kernelVersion: kernel.version,
    kernelPackageVersion: kernel.packageVersion,
    files: await hashSources(sources, recipe),
  });
  const root = imagesDir(dataDir);
  const dest = join(root, imageDirName(recipe.name, hash));
  if (!opts.force) {
    const cached = await readImage(dest);
    if (cached) return cached;
  }

  await mkdir(root, { recursive: true });
  await cleanStaleTmp(root);
  await cleanStaleTmp(join(dataDir, 'cache'));
  const tmp = await mkdtemp(join(root, `.tmp-${recipe.name}-`));
  try {
    // The rootfs tree comes first: it is the slow, cached part.
    const tree = hasRootfs
      ? await ensureRootfsTree({
          dataDir,
          suite: recipe.suite,
          packages: recipe.packages,
          mirror: opts.mirror,
          onProgress,
          signal,
        })
      : null;

    // The kernel is hard-linked from the kernel cache (copied across file systems).
    await link(kernel.vmlinuxPath, join(tmp, 'vmlinux')).catch(() =>
      copyFile(kernel.vmlinuxPath, join(tmp, 'vmlinux')),
    );

    onProgress?.({ step: 'initramfs', detail: `modules: ${recipe.modules.join(', ')}` });
    const initrd = await buildInitramfs(
      {
        modulesDir: kernel.modulesDir,
        modules: recipe.modules,
        initPath: sources.initPath,
        forkdInitPath: sources.forkdInitPath,
        busyboxPath: sources.busyboxPath,
        agentPath: hasRootfs ? null : sources.agentPath,
        signal,
      },
      join(tmp, 'initrd.img'),
    );
    onProgress?.({
      step: 'initramfs',
      detail: `initrd.img ${(initrd.bytes / 1048576).toFixed(1)} MiB`,
      fraction: 1,
    });

    let rootfsBytes: number | null = null;
    if (tree) {
      const npmDir = recipe.npm?.length
        ? await ensureNpmModules(dataDir, recipe.npm, { onProgress, signal })
        : null;
      const built = await buildRootfs({
        tree,
        sources,
        runtime: recipe.runtime,
        addExtras: (root) => addRecipeExtras(root, recipe, npmDir, signal),
        workDir: tmp,
        outPath: join(tmp, 'rootfs.ext4'),
        signal,
        onProgress,
      });
      rootfsBytes = built.bytes;
    }
    throwIfAborted(signal);

    const json: ImageJson = {
      format: 1,
      recipe: recipe.name,
      contentHash: hash,
      kernel: 'vmlinux',
      kernelVersion: kernel.version,
      kernelPackageVersion: kernel.packageVersion,
      initrd: 'initrd.img',
      rootfs: tree ? 'rootfs.ext4' : null,
      kernelCmdline,
      runtime: recipe.runtime,
      memoryMib: recipe.memoryMib,
      ...(recipe.vcpus ? { vcpus: recipe.vcpus } : {}),
      ...(recipe.warmup ? { warmup: recipe.warmup } : {}),
      createdAt: new Date().toISOString(),
      initrdBytes: initrd.bytes,
      rootfsBytes,
      modules: initrd.modules,
    };
    await writeFile(join(tmp, IMAGE_JSON), JSON.stringify(json, null, 2) + '\n');

    if (await exists(dest)) {
      // force, or a broken leftover: move the old one away before renaming in.
      const old = join(root, `.tmp-old-${imageDirName(recipe.name, hash)}-${process.pid}`);
      await rename(dest, old).catch(() => {});
      await removeTree(old);
    }
    try {
      await rename(tmp, dest);
    } catch (err) {
      // A concurrent build of the same inputs won the race: theirs is as good.
      const theirs = await readImage(dest);
      if (!theirs) throw err;
      await removeTree(tmp);
      return theirs;
    }
    onProgress?.({ step: 'image', detail: `${imageDirName(recipe.name, hash)} ready`, fraction: 1 });
    return toGuestImage(dest, json);
  } catch (err) {
    await removeTree(tmp).catch(() => {});
    throw err;
  }
}
