// The built-in image recipes. A recipe is plain data: what goes into the
// guest (packages, kernel modules, warm runtime) and how it boots. Its JSON is
// part of the image's content hash, so editing a recipe makes a new image.
import { InvalidArgumentError } from '../errors.js';
import type { Recipe } from './types.js';

/** What every guest loads: the virtio-mmio transport and the agent's devices. */
export const BASE_MODULES = ['virtio_mmio', 'virtio_console', 'virtio_rng', 'virtio_net'] as const;
/** A virtio-blk root with ext4 (crc32c is a soft dependency modules.dep does not list). */
export const DISK_MODULES = ['virtio_blk', 'crc32c_generic', 'ext4'] as const;

export const RECIPES: readonly Recipe[] = Object.freeze([
  {
    name: 'tiny',
    description:
      'busybox initramfs with the agent as PID 1; no disk, no language runtime (exec and files only)',
    suite: 'bookworm',
    packages: [],
    modules: [...BASE_MODULES],
    runtime: null,
    memoryMib: 256,
    kernelCmdlineExtra: [],
  },
  {
    name: 'python-numpy',
    description:
      'Debian bookworm (minbase) with python3 and numpy, imported by a warm runtime before the snapshot',
    suite: 'bookworm',
    packages: ['python3-numpy'],
    modules: [...BASE_MODULES, ...DISK_MODULES],
    runtime: {
      kind: 'python',
      argv: ['python3', '/usr/lib/forkd/python_runtime.py'],
      imports: ['numpy'],
    },
    memoryMib: 512,
    kernelCmdlineExtra: ['root=/dev/vda', 'rootfstype=ext4', 'rootflags=noatime'],
  },
] satisfies Recipe[]);

export function getRecipe(name: string): Recipe {
  const recipe = RECIPES.find((r) => r.name === name);
  if (!recipe) {
    throw new InvalidArgumentError(
      `unknown image recipe '${name}' (valid: ${RECIPES.map((r) => r.name).join(', ')})`,
      'recipe',
    );
  }
  return recipe;
}

/** Does this recipe have a root filesystem (a disk), or is the initramfs the whole guest? */
export function recipeHasRootfs(recipe: Recipe): boolean {
  return recipe.packages.length > 0;
}

/**
 * The guest kernel command line for a recipe, except what the VMM layer adds.
 * `quiet` keeps the slow emulated serial console out of the boot path;
 * cryptomgr.notests skips the crypto self-tests (~0.2 s under TCG);
 * init_on_free=1 zeroes freed pages so snapshots compress and sparsify.
 * `tscKhz` (the host's TSC rate, see host.ts) becomes tsc_early_khz=: without
 * it a TCG guest on a busy host usually hangs in timer calibration.
 */
export function guestKernelCmdline(recipe: Recipe, opts: { tscKhz?: number | null } = {}): string {
  return [
    'console=ttyS0',
    'reboot=k',
    'panic=-1',
    'init_on_free=1',
    'quiet',
    'cryptomgr.notests',
    // Under TCG the guest's TSC and its timer interrupts drift apart on a
    // busy host, the clocksource watchdog then marks the TSC unstable, and
    // the kernel falls back to jiffies with a periodic 250 Hz tick: ~3% of a
    // host core per *idle* child. The TSC of a VM is what it is; trust it.
    'tsc=reliable',
    'no_timer_check',
    ...(opts.tscKhz ? [`tsc_early_khz=${opts.tscKhz}`] : []),
    ...recipe.kernelCmdlineExtra,
  ].join(' ');
}
