// The built-in image recipes: recipe files like any user's (recipe-file.ts),
// in the repo's recipes/<name>/recipe.yaml, read once when first asked for.
// A recipe is plain data: what goes into the guest and how it boots. Its
// JSON is part of the image's content hash, so editing a recipe makes a new
// image.
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, MissingDependencyError } from '../errors.js';
import { loadRecipeFileSync } from './recipe-file.js';
import type { Recipe } from './types.js';

export { BASE_MODULES, DISK_MODULES } from './recipe-file.js';

export const RECIPE_FILE = 'recipe.yaml';

/** The repo's recipes/ directory: walk up from this module until recipes/tiny/recipe.yaml exists. */
export function builtinRecipesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'recipes', 'tiny', RECIPE_FILE))) return join(dir, 'recipes');
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new MissingDependencyError('cannot find the recipes/ directory of the forkd checkout', 'recipes', {
    hint: 'run forkd from its repository',
  });
}

let builtins: readonly Recipe[] | null = null;

/** The built-in recipes, by name (each recipes/<name>/recipe.yaml, whose name must be its folder's). */
export function builtinRecipes(): readonly Recipe[] {
  if (builtins) return builtins;
  const dir = builtinRecipesDir();
  const recipes = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, RECIPE_FILE)))
    .map((e) => {
      const recipe = loadRecipeFileSync(join(dir, e.name, RECIPE_FILE));
      if (recipe.name !== e.name) {
        throw new InvalidArgumentError(
          `${join(dir, e.name, RECIPE_FILE)} is named ${recipe.name}, not ${e.name}`,
          'recipe',
        );
      }
      return recipe;
    })
    .sort((a, b) => a.name.localeCompare(b.name));
  builtins = Object.freeze(recipes);
  return builtins;
}

export function getRecipe(name: string): Recipe {
  const recipe = builtinRecipes().find((r) => r.name === name);
  if (!recipe) {
    throw new InvalidArgumentError(
      `unknown image recipe '${name}' (valid: ${builtinRecipes()
        .map((r) => r.name)
        .join(', ')}; or a recipe file: ./my.yaml)`,
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
