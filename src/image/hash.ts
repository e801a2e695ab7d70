// An image's identity: sha256 over everything that goes into it (the recipe,
// the kernel and its command line, the agent, the init scripts, the warm runtime when the recipe
// has one, busybox, and the builder's format version). Equal hash, equal image.
import { createHash } from 'node:crypto';
import { sha256File } from './fsutil.js';
import { RUNTIMES, runtimeSourcePath } from './runtimes.js';
import type { GuestSources } from './sources.js';
import type { Recipe } from './types.js';

/** Bump when the builder's output changes for the same inputs. */
export const IMAGE_BUILDER_FORMAT = 2;

export interface HashInputs {
  /** The recipe, with its files by content (recipeHashInput). */
  recipe: unknown;
  kernelCmdline: string;
  kernelVersion: string;
  kernelPackageVersion: string;
  /** sha256 (hex) of each input file, by role. */
  files: Record<string, string>;
}

/** JSON with object keys sorted at every level: one text per value. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function contentHash(inputs: HashInputs): string {
  const text = canonicalJson({ builder: IMAGE_BUILDER_FORMAT, ...inputs });
  return createHash('sha256').update(text).digest('hex');
}

/** Hash the guest files a recipe uses. */
export async function hashSources(sources: GuestSources, recipe: Recipe): Promise<Record<string, string>> {
  const files: Record<string, string> = {
    agent: await sha256File(sources.agentPath),
    init: await sha256File(sources.initPath),
    forkdInit: await sha256File(sources.forkdInitPath),
    busybox: await sha256File(sources.busyboxPath),
  };
  if (recipe.runtime) {
    for (const name of RUNTIMES[recipe.runtime.kind].files) {
      files[`runtime/${name}`] = await sha256File(runtimeSourcePath(sources.guestDir, name));
    }
  }
  return files;
}
