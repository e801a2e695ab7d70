// A guest image from a caller's own kernel and ext4 root file system (the
// original forkd's POST /v1/snapshots {kernel, rootfs}). The caller's files are
// only read. forkd's agent, busybox, init and Python runtime travel in the
// initramfs and are mounted on the root's /run at boot
// (guest/init/forkd-foreign-root), so nothing of forkd is written into the
// image. The kernel, a copy of the rootfs and the initramfs are staged in
// images/.tmp-foreign-*; the snapshot hard-links them, then the staging dir
// goes (a crashed run's is swept by the next build, like any .tmp-*).
import { rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, TimeoutError, VmExitedError } from '../errors.js';
import { onProcessExit } from '../util/cleanup.js';
import { run } from '../util/run.js';
import { removeTree, sha256File } from './fsutil.js';
import { contentHash, hashSources } from './hash.js';
import { hostTscKhz } from './host.js';
import { runtimeSourcePath } from './runtimes.js';
import { buildInitramfs } from './initramfs.js';
import { listKernels, type KernelInfo } from './kernel.js';
import { BASE_MODULES, DISK_MODULES, guestKernelCmdline } from './recipes.js';
import { locateSources, type SourceOverrides } from './sources.js';
import { imagesDir } from './store.js';
import type { GuestImage, ProgressFn, Recipe } from './types.js';
import { kernelVersionOf, type UserKernel, type UserRootfs } from './user-files.js';

/** Where the initramfs puts forkd's files in the guest (see forkd-foreign-root). */
const GUEST_DIR = '/run/forkd';

/**
 * What such an image is, as recipe data (it enters the content hash). Not in
 * RECIPES: it cannot be built by name. python3 warms with no import required;
 * numpy is imported when the image has it.
 */
export const FOREIGN_RECIPE: Recipe = Object.freeze<Recipe>({
  name: 'user-rootfs',
  description: "a caller's own kernel and ext4 root file system, with forkd's files mounted on /run/forkd",
  suite: '',
  packages: [],
  modules: [...BASE_MODULES, ...DISK_MODULES],
  runtime: {
    kind: 'python',
    argv: ['python3', `${GUEST_DIR}/python_runtime.py`],
    imports: [],
    optionalImports: ['numpy'],
  },
  memoryMib: 512,
  kernelCmdlineExtra: ['root=/dev/vda', 'rootfstype=ext4', 'rootflags=noatime', 'forkd.foreign=1'],
});

export interface ForeignImageOptions extends SourceOverrides {
  dataDir: string;
  onProgress?: ProgressFn | undefined;
  signal?: AbortSignal | undefined;
  /** Host TSC rate for tsc_early_khz= (default: read from /proc/cpuinfo; null: omit). */
  tscKhz?: number | null | undefined;
}

export interface ForeignImage {
  image: GuestImage;
  /** forkd's cached kernel of the same release, whose modules the initramfs loads; null: none. */
  forkdKernel: KernelInfo | null;
  /** The boot error to report: says what a kernel that is not forkd's may lack. */
  explainBootFailure(err: unknown): unknown;
  /** Remove the staging dir (the snapshot holds its own links). Safe to call twice. */
  dispose(): Promise<void>;
}

/** Stage a bootable image from checked user files (see user-files.ts). */
export async function prepareForeignImage(
  kernel: UserKernel,
  rootfs: UserRootfs,
  opts: ForeignImageOptions,
): Promise<ForeignImage> {
  const { onProgress, signal } = opts;
  const sources = await locateSources(opts, true);
  const setupPath = join(sources.guestDir, 'init', 'forkd-foreign-root');
  const kernelBytes = await readFile(kernel.path);
  const version = kernelVersionOf(kernelBytes);
  const cached = await listKernels(opts.dataDir);
  // Modules load only into the release they were built for.
  const forkdKernel = cached.find((k) => k.version === version) ?? null;

  await mkdir(imagesDir(opts.dataDir), { recursive: true });
  const dir = await mkdtemp(join(imagesDir(opts.dataDir), '.tmp-foreign-'));
  const forget = onProcessExit(() => rmSync(dir, { recursive: true, force: true }));
  const dispose = async () => {
    forget();
    await removeTree(dir);
  };
  try {
    const kernelPath = join(dir, 'vmlinux');
    await writeFile(kernelPath, kernelBytes, { mode: 0o644 });

    const recipe = FOREIGN_RECIPE;
    const runtimeJson = Buffer.from(JSON.stringify(recipe.runtime) + '\n');
    onProgress?.({
      step: 'initramfs',
      detail: forkdKernel
        ? `modules of forkd's kernel ${forkdKernel.version}`
        : `no modules: ${kernel.path} is not a kernel forkd has (${version ?? 'unknown release'})`,
    });
    const initrdPath = join(dir, 'initrd.img');
    await buildInitramfs(
      {
        modulesDir: forkdKernel?.modulesDir ?? null,
        modules: recipe.modules,
        initPath: sources.initPath,
        forkdInitPath: sources.forkdInitPath,
        busyboxPath: sources.busyboxPath,
        agentPath: sources.agentPath,
        extraFiles: [
          { path: 'sbin/forkd-foreign-root', data: await readFile(setupPath), mode: 0o755 },
          {
            path: 'usr/lib/forkd/python_runtime.py',
            data: await readFile(runtimeSourcePath(sources.guestDir, 'python_runtime.py')),
          },
          { path: 'usr/lib/forkd/runtime.json', data: runtimeJson },
        ],
        signal,
      },
      initrdPath,
    );

    // A copy, not a link: the snapshot's base must never change under its
    // children, and the caller may rewrite their file in place (mkfs.ext4 -F
    // writes through); its owner and mode stay theirs too. Sparse, and a
    // reflink where the file system can.
    onProgress?.({
      step: 'rootfs',
      detail: `copying ${rootfs.path} (${(rootfs.bytes / 1048576).toFixed(0)} MiB, sparse)`,
    });
    const rootfsPath = join(dir, 'rootfs.ext4');
    await run(['cp', '--reflink=auto', '--sparse=always', rootfs.path, rootfsPath], { signal });
    await chmod(rootfsPath, 0o644);

    const kernelCmdline = guestKernelCmdline(recipe, {
      tscKhz: opts.tscKhz === undefined ? hostTscKhz() : opts.tscKhz,
    });
    const hash = contentHash({
      recipe,
      kernelCmdline,
      kernelVersion: version ?? 'unknown',
      kernelPackageVersion: '',
      files: {
        ...(await hashSources(sources, recipe)),
        foreignRoot: await sha256File(setupPath),
        kernel: createHash('sha256').update(kernelBytes).digest('hex'),
        // Hashing gigabytes would cost seconds for a value nobody verifies:
        // the file system's UUID, size and mtime identify the image.
        rootfs: `ext4:${rootfs.uuid}:${rootfs.bytes}:${Math.round(rootfs.mtimeMs)}`,
      },
    });
    const image: GuestImage = {
      recipe: recipe.name,
      contentHash: hash,
      dir,
      kernelPath,
      kernelVersion: version ?? 'unknown',
      initrdPath,
      rootfsPath,
      kernelCmdline,
      runtime: recipe.runtime,
      memoryMib: recipe.memoryMib,
      createdAt: new Date().toISOString(),
    };
    const explainBootFailure = (err: unknown) =>
      forkdKernel ? err : explainForeignKernel(err, kernel.path, cached[0]?.vmlinuxPath ?? null);
    return { image, forkdKernel, explainBootFailure, dispose };
  } catch (err) {
    await dispose();
    throw err;
  }
}

/**
 * A guest on a kernel that is not forkd's gets no modules, so it comes up only
 * if virtio-mmio, virtio-blk, virtio-console and ext4 are built in: say so
 * when it never answered. A QEMU that did not exit (exit code and signal both
 * null) means the guest did answer and its warm runtime failed: that error
 * already says why.
 */
export function explainForeignKernel(
  err: unknown,
  kernelPath: string,
  forkdKernelPath: string | null,
): unknown {
  const forkd = forkdKernelPath ?? "none fetched yet: 'forkd image build tiny' fetches it";
  const why = `the guest did not become ready: the kernel at ${kernelPath} may lack virtio drivers (forkd's kernel: ${forkd})`;
  const hint = "a kernel other than forkd's needs virtio_mmio, virtio_blk, virtio_console and ext4 built in";
  // The caller's kernel did not boot: their input, so a 400 naming it, not the daemon's 500.
  const booted = !(
    err instanceof TimeoutError ||
    (err instanceof VmExitedError && (err.exit.code !== null || err.exit.signal !== null))
  );
  if (booted) return err;
  return new InvalidArgumentError(`${why}: ${(err as Error).message}`, 'kernel', { cause: err, hint });
}
