// What a recipe adds to its root filesystem beyond Debian packages: host
// files, and npm packages installed on the host (the guest has no network
// while an image is built) into a cache keyed by the package list, then
// copied to NPM_MODULES_DIR. Also what of them goes into the image's hash:
// file contents and modes, never host paths.
import { RUNTIME_DIR } from './runtimes.js';
import { createHash } from 'node:crypto';
import { chmod, copyFile, lstat, mkdir, mkdtemp, readlink, rename, rm } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { InvalidArgumentError } from '../errors.js';
import { HostCommandError, run } from '../util/run.js';
import { exists, removeTree, sha256File } from './fsutil.js';
import type { ProgressFn, Recipe } from './types.js';

/** Where a recipe's npm packages live in the guest (the Node runtime resolves modules there too). */
export const NPM_MODULES_DIR = `${RUNTIME_DIR.slice(1)}/node_modules`;

/** The recipe as its image hash sees it: each file by content and mode, not by host path. */
export async function recipeHashInput(recipe: Recipe): Promise<unknown> {
  if (!recipe.files?.length) return recipe;
  const files = [];
  for (const f of recipe.files)
    files.push({ dest: f.dest, mode: f.mode, sha256: await sha256File(f.source) });
  return { ...recipe, files };
}

/**
 * The npm packages of a recipe, installed once per package list into the
 * data dir's cache: the directory holding their node_modules.
 */
export async function ensureNpmModules(
  dataDir: string,
  specs: readonly string[],
  opts: { onProgress?: ProgressFn | undefined; signal?: AbortSignal | undefined } = {},
): Promise<string> {
  const sorted = [...specs].sort();
  const key = createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 16);
  const cacheDir = join(dataDir, 'cache');
  const dest = join(cacheDir, `npm-${key}`);
  if (await exists(join(dest, 'node_modules'))) return dest;
  await mkdir(cacheDir, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, '.tmp-npm-'));
  try {
    opts.onProgress?.({ step: 'npm', detail: `npm install ${sorted.join(' ')}`, fraction: 0 });
    await run(
      [
        'npm',
        'install',
        '--prefix',
        tmp,
        '--no-save',
        '--no-package-lock',
        '--omit=dev',
        // Install scripts would run on the host, as whoever builds the image.
        '--ignore-scripts',
        '--no-audit',
        '--no-fund',
        '--loglevel=error',
        ...sorted,
      ],
      { signal: opts.signal, stderrTailBytes: 16384 },
    ).catch((err: unknown) => {
      throw npmFailure(err, sorted);
    });
    await rename(tmp, dest);
    opts.onProgress?.({ step: 'npm', detail: 'npm packages ready', fraction: 1 });
    return dest;
  } catch (err) {
    await removeTree(tmp).catch(() => undefined);
    throw err;
  }
}

/** npm's "no such package" and "no such version" as one line naming it. */
function npmFailure(err: unknown, specs: readonly string[]): unknown {
  if (!(err instanceof HostCommandError)) return err;
  // npm 9 says "'x@*' is not in this registry", npm 10 "Not Found - GET https://registry…/x".
  const missing =
    /404\s+'([^'\s]+?)(@[^'\s]*)?' is not in this registry/.exec(err.stderrTail)?.[1] ??
    /404 Not Found - GET \S+\/((?:@[^/\s]+(?:\/|%2[fF]))?[^/\s]+)\s*$/m
      .exec(err.stderrTail)?.[1]
      ?.replace(/%2[fF]/, '/');
  if (missing) {
    return new InvalidArgumentError(`npm package ${missing} does not exist in the npm registry`, 'npm', {
      hint: 'check its name on npmjs.com',
    });
  }
  const version = /No matching version found for (\S+)/.exec(err.stderrTail)?.[1];
  if (version) {
    return new InvalidArgumentError(`npm has no version matching ${version.replace(/\.$/, '')}`, 'npm', {
      hint: 'npm view <package> versions lists them',
    });
  }
  return new HostCommandError(
    `npm install ${specs.join(' ')} failed: ${err.stderrTail.trim().split('\n').slice(-3).join(' | ')}`,
    err.argv,
    err.exitCode,
    err.stderrTail,
  );
}

/** Copy a recipe's files and npm packages into a root filesystem tree (replacing, never writing through hard links). */
export async function addRecipeExtras(
  tree: string,
  recipe: Recipe,
  npmDir: string | null,
  signal?: AbortSignal,
): Promise<void> {
  for (const file of recipe.files ?? []) {
    const target = await pathInTree(tree, file.dest);
    await mkdir(dirname(target), { recursive: true });
    await rm(target, { force: true });
    await copyFile(file.source, target);
    await chmod(target, file.mode);
  }
  if (npmDir) {
    const target = join(tree, NPM_MODULES_DIR);
    await mkdir(dirname(target), { recursive: true });
    await run(['cp', '-a', join(npmDir, 'node_modules'), target], { signal });
  }
}

/**
 * `dest` inside the tree, refusing a path through a symlink: the tree's
 * links are the guest's (/var/run is /run), and following one here would
 * write on the host.
 */
async function pathInTree(tree: string, dest: string): Promise<string> {
  const parts = dest.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) {
    throw new InvalidArgumentError(`${dest} is not a file path in the guest`, 'files');
  }
  let at = tree;
  for (const part of parts.slice(0, -1)) {
    at = join(at, part);
    const st = await lstat(at).catch(() => null);
    if (st?.isSymbolicLink()) {
      throw new InvalidArgumentError(
        `files: ${dest} goes through /${relative(tree, at)}, a symlink in the guest`,
        'files',
        { hint: `use the path it points to (${await readlink(at)})` },
      );
    }
  }
  return join(at, parts[parts.length - 1]!);
}
