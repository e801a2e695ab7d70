// `forkd hub build`: a hub directory from recipes in one go. Each recipe is
// built, snapshotted, packed (and signed) and published as <owner>/<name>,
// one after the other; its snapshot is a temporary one, removed once its
// pack is published. Each publish is atomic: a failure stops the build,
// naming the recipe, and leaves what was published before it.
import type { KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { errorMessage, ForkdError } from '../errors.js';
import { PACK_EXTENSION } from '../hub/pack-manifest.js';
import { checkPackageName, publishPack, timeVersion } from '../hub/publish.js';
import { getRecipe, type Recipe } from '../image/index.js';
import type { CallOptions } from '../util/abort.js';
import type { Engine } from './engine.js';

export interface HubBuildOptions extends CallOptions {
  hubDir: string;
  /** Built-in recipe names or recipes read from files. */
  recipes: readonly (string | Recipe)[];
  /** The packages' owner: <owner>/<recipe name>. */
  owner: string;
  /** One version label for every package (default: the build's UTC time, e.g. 20261202T041207Z). */
  version?: string | undefined;
  signKey?: KeyObject | undefined;
  level?: number | undefined;
  /** Replace versions that are already published. */
  force?: boolean | undefined;
  onProgress?: ((step: string) => void) | undefined;
}

export interface HubBuildPackage {
  recipe: string;
  name: string;
  version: string;
  sizeBytes: number;
  sha256: string;
  signer: string | null;
  snapshotMs: number;
  packMs: number;
}

export async function buildHub(engine: Engine, opts: HubBuildOptions): Promise<HubBuildPackage[]> {
  const version = opts.version ?? timeVersion(new Date().toISOString());
  // Every recipe and package name is checked before the first (slow) build.
  const recipes = opts.recipes.map((r) => (typeof r === 'string' ? getRecipe(r) : r));
  const names = recipes.map((r) => r.name);
  for (const name of names) checkPackageName(`${opts.owner}/${name}`, version);
  await mkdir(opts.hubDir, { recursive: true });
  const scratch = await mkdtemp(join(opts.hubDir, '.build-'));
  const built: HubBuildPackage[] = [];
  try {
    for (const [index, recipe] of recipes.entries()) {
      const name = names[index]!;
      const say = (step: string) => opts.onProgress?.(`[${index + 1}/${names.length} ${name}] ${step}`);
      built.push(await buildOne(engine, { ...opts, recipe, name, version, scratch, say }));
    }
    return built;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function buildOne(
  engine: Engine,
  opts: HubBuildOptions & {
    recipe: Recipe;
    name: string;
    version: string;
    scratch: string;
    say: (step: string) => void;
  },
): Promise<HubBuildPackage> {
  const tag = `${opts.name}-hub-${randomBytes(3).toString('hex')}`;
  const packPath = join(opts.scratch, `${opts.name}${PACK_EXTENSION}`);
  try {
    const started = Date.now();
    opts.say('building and snapshotting');
    await engine.createSnapshot({
      tag,
      recipe: opts.recipe,
      signal: opts.signal,
      onProgress: opts.say,
      onImageProgress: (e) => opts.say(`image: ${e.step}${e.detail ? `: ${e.detail}` : ''}`),
    });
    const snapshotMs = Date.now() - started;
    opts.say('packing');
    const packed = await engine.pack(tag, {
      output: packPath,
      level: opts.level,
      signKey: opts.signKey,
      signal: opts.signal,
    });
    const packMs = Date.now() - started - snapshotMs;
    const published = await publishPack({
      hubDir: opts.hubDir,
      file: packPath,
      name: `${opts.owner}/${opts.name}`,
      version: opts.version,
      move: true,
      force: opts.force,
      sha256: packed.sha256,
    });
    opts.say(`published ${published.name}@${published.version}`);
    return {
      recipe: opts.name,
      name: published.name,
      version: published.version,
      sizeBytes: published.entry.size_bytes,
      sha256: published.entry.sha256,
      signer: published.entry.signer ?? null,
      snapshotMs,
      packMs,
    };
  } catch (err) {
    if (err instanceof ForkdError) {
      err.message = `recipe ${opts.name}: ${err.message}`;
      throw err;
    }
    throw new Error(`recipe ${opts.name}: ${errorMessage(err)}`, { cause: err });
  } finally {
    await rm(packPath, { force: true });
    await engine.store.remove(tag).catch(() => undefined);
  }
}
