// Recipe files: a user's own image recipe in YAML (or JSON, which is YAML),
// validated against one schema and turned into the Recipe the builder takes.
// Paths in `files` are relative to the recipe file. Documented in
// docs/recipes.md; the built-in recipes are such files too.
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
import Type, { type Static } from 'typebox';
import { Value } from 'typebox/value';
import { parse as parseYaml } from 'yaml';
import { InvalidArgumentError } from '../errors.js';
import { RUNTIMES } from './runtimes.js';
import type { Recipe, RuntimeConfig } from './types.js';

/** Debian package names (policy 5.6.1), optionally with an architecture qualifier. */
const DEBIAN_PACKAGE = '^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?$';
/** name@version, name or @scope/name@version: no URLs, paths or git specs (they would run code or reach hosts). */
const NPM_SPEC = '^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*(@[A-Za-z0-9.^~<>=*+-]+)?$';
const RECIPE_NAME = '^[a-z0-9][a-z0-9-]{0,47}$';
const GUEST_PATH = '^/[^\\0]*$';

export const RecipeFileSchema = Type.Object(
  {
    name: Type.String({ pattern: RECIPE_NAME, description: 'the image name: lower case, digits and -' }),
    description: Type.String({ maxLength: 1000 }),
    suite: Type.Optional(
      Type.String({ pattern: '^[a-z]+$', description: 'Debian suite (default bookworm)' }),
    ),
    packages: Type.Optional(Type.Array(Type.String({ pattern: DEBIAN_PACKAGE }), { maxItems: 500 })),
    npm: Type.Optional(Type.Array(Type.String({ pattern: NPM_SPEC }), { maxItems: 200 })),
    files: Type.Optional(
      Type.Array(
        Type.Object(
          {
            src: Type.String({ minLength: 1 }),
            dest: Type.String({ pattern: GUEST_PATH }),
            mode: Type.Optional(Type.String({ pattern: '^0?[0-7]{3}$' })),
          },
          { additionalProperties: false },
        ),
        { maxItems: 1000 },
      ),
    ),
    memory_mib: Type.Optional(Type.Integer({ minimum: 64, maximum: 65536 })),
    vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
    runtime: Type.Optional(
      Type.Union([
        Type.Literal('python'),
        Type.Literal('node'),
        Type.Literal('browser'),
        Type.Literal('postgres'),
        Type.Literal('jupyter'),
        Type.Literal('none'),
      ]),
    ),
    imports: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_.]*( as [A-Za-z_][A-Za-z0-9_]*)?$' })),
    ),
    modules: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9_-]+$' }))),
    warmup: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { maxItems: 100 })),
    ready: Type.Optional(Type.String({ minLength: 1 })),
    warmup_timeout_secs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600 })),
  },
  { additionalProperties: false },
);
export type RecipeFileSchema = Static<typeof RecipeFileSchema>;

const DEFAULT_WARMUP_TIMEOUT_SECS = 600;

/** What every guest loads: the virtio-mmio transport and the agent's devices. */
export const BASE_MODULES = ['virtio_mmio', 'virtio_console', 'virtio_rng', 'virtio_net'] as const;
/** A virtio-blk root with ext4 (crc32c is a soft dependency modules.dep does not list). */
export const DISK_MODULES = ['virtio_blk', 'crc32c_generic', 'ext4'] as const;

/** Whether a --image argument names a recipe file rather than a built-in recipe. */
export function isRecipePath(ref: string): boolean {
  return ref.includes('/') || /\.(ya?ml|json)$/.test(ref);
}

/** Read, validate and resolve a recipe file. Every problem is one InvalidArgumentError naming the file. */
export async function loadRecipeFile(path: string): Promise<Recipe> {
  const file = resolve(path);
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw unreadable(file, err);
  });
  return recipeFromText(text, file);
}

/** The same, at once (the built-in recipes are read when first asked for). */
export function loadRecipeFileSync(path: string): Recipe {
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw unreadable(file, err);
  }
  return recipeFromText(text, file);
}

function unreadable(file: string, err: unknown): InvalidArgumentError {
  return new InvalidArgumentError(
    `cannot read recipe file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
    'recipe',
  );
}

function recipeFromText(text: string, file: string): Recipe {
  let value: unknown;
  try {
    value = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    const message = (err as Error).message.split('\n')[0];
    throw new InvalidArgumentError(`${file} is not valid YAML: ${message}`, 'recipe');
  }
  return recipeFromFile(value, file);
}

/** A parsed recipe document, validated; `file` locates its relative paths and names it in errors. */
export function recipeFromFile(value: unknown, file: string): Recipe {
  const problem = Value.Errors(RecipeFileSchema, value)[0];
  if (problem) {
    const where = problem.instancePath || '/';
    throw new InvalidArgumentError(`${file}: ${where} ${problem.message}`, 'recipe', {
      hint: 'see docs/recipes.md for the fields a recipe has',
    });
  }
  const doc = value as RecipeFileSchema;
  const packages = doc.packages ?? [];
  const runtime = runtimeFor(doc, file);
  if (packages.length === 0 && (doc.npm?.length || doc.files?.length || runtime)) {
    throw new InvalidArgumentError(
      `${file}: npm packages, files and a runtime need a root filesystem, and a recipe without Debian packages has none`,
      'recipe',
      { hint: 'list the Debian packages the guest needs (python3, nodejs, …) under packages' },
    );
  }
  const files = [];
  for (const entry of doc.files ?? []) {
    const source = isAbsolute(entry.src) ? entry.src : resolve(dirname(file), entry.src);
    if (!isRegularFile(source)) {
      throw new InvalidArgumentError(`${file}: files: ${source} is not a readable regular file`, 'recipe');
    }
    if (entry.dest.split('/').includes('..') || entry.dest.endsWith('/')) {
      throw new InvalidArgumentError(
        `${file}: files: ${entry.dest} is not a file path in the guest`,
        'recipe',
      );
    }
    files.push({ source, dest: entry.dest, mode: entry.mode ? Number.parseInt(entry.mode, 8) : 0o644 });
  }
  const hasDisk = packages.length > 0;
  return {
    name: doc.name,
    description: doc.description,
    suite: doc.suite ?? 'bookworm',
    packages,
    modules: [...new Set([...BASE_MODULES, ...(hasDisk ? DISK_MODULES : []), ...(doc.modules ?? [])])],
    runtime,
    memoryMib: doc.memory_mib ?? (hasDisk ? 512 : 256),
    kernelCmdlineExtra: hasDisk ? ['root=/dev/vda', 'rootfstype=ext4', 'rootflags=noatime'] : [],
    ...(doc.vcpus ? { vcpus: doc.vcpus } : {}),
    ...(doc.npm?.length ? { npm: doc.npm } : {}),
    ...(files.length ? { files } : {}),
    ...(doc.warmup?.length || doc.ready
      ? {
          warmup: {
            steps: doc.warmup ?? [],
            ready: doc.ready ?? null,
            timeoutMs: (doc.warmup_timeout_secs ?? DEFAULT_WARMUP_TIMEOUT_SECS) * 1000,
          },
        }
      : {}),
  };
}

/** "playwright-core@1.61.1" -> "playwright-core"; "@scope/x@1" -> "@scope/x". */
function npmName(spec: string): string {
  const at = spec.indexOf('@', 1);
  return at < 0 ? spec : spec.slice(0, at);
}

function isRegularFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function runtimeFor(doc: RecipeFileSchema, file: string): RuntimeConfig | null {
  const kind = doc.runtime ?? 'none';
  if (kind !== 'none') {
    const names = new Set((doc.npm ?? []).map(npmName));
    const missing = (RUNTIMES[kind].needsNpm ?? []).filter((name) => !names.has(name));
    if (missing.length) {
      throw new InvalidArgumentError(
        `${file}: runtime ${kind} needs the npm package ${missing.join(', ')}`,
        'recipe',
        {
          hint: `add it under npm, e.g. npm: [${missing.map((m) => `${m}@<version>`).join(', ')}]`,
        },
      );
    }
    return { kind, argv: RUNTIMES[kind].argv, imports: doc.imports ?? [] };
  }
  if (doc.imports?.length) {
    throw new InvalidArgumentError(
      `${file}: imports need a runtime (runtime: python, node, browser or jupyter)`,
      'recipe',
    );
  }
  return null;
}
