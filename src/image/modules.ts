// Kernel modules for the initramfs: resolve wanted module names into the
// order insmod must load them (dependencies first) from modules.dep, skip the
// ones built into the kernel, and read each .ko decompressed (busybox insmod
// cannot load .ko.xz / .ko.zst / .ko.gz).
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { InvalidArgumentError } from '../errors.js';
import { run } from '../util/run.js';

/** Module names are equal modulo '-' vs '_' (virtio-rng.ko is module virtio_rng). */
export function moduleName(pathOrName: string): string {
  return basename(pathOrName)
    .replace(/\.ko(\.(xz|zst|gz))?$/, '')
    .replace(/-/g, '_');
}

export interface ModuleDep {
  name: string;
  /** Path relative to lib/modules/<version>. */
  path: string;
  deps: string[];
}

/** Parse modules.dep ("path: dep-path dep-path …" per line) into a map by module name. */
export function parseModulesDep(text: string): Map<string, ModuleDep> {
  const out = new Map<string, ModuleDep>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const path = line.slice(0, colon).trim();
    const deps = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .filter((d) => d !== '')
      .map(moduleName);
    out.set(moduleName(path), { name: moduleName(path), path, deps });
  }
  return out;
}

/** Names of modules built into the kernel, from modules.builtin (paths, one a line). */
export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')
      .map(moduleName),
  );
}

/**
 * The wanted modules and their dependencies, each once, dependencies before
 * dependants, otherwise in the order asked. Built-in modules are skipped; an
 * unknown name is an InvalidArgumentError.
 */
export function resolveModuleOrder(
  wanted: readonly string[],
  deps: Map<string, ModuleDep>,
  builtin: Set<string> = new Set(),
): ModuleDep[] {
  const order: ModuleDep[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (raw: string, chain: string[]) => {
    const name = moduleName(raw);
    if (done.has(name)) return;
    const dep = deps.get(name);
    if (!dep) {
      if (builtin.has(name)) {
        done.add(name);
        return;
      }
      throw new InvalidArgumentError(
        `kernel module '${name}' is neither a module nor built in${chain.length ? ` (needed by ${chain.join(' <- ')})` : ''}`,
        'modules',
      );
    }
    if (visiting.has(name)) {
      throw new InvalidArgumentError(
        `kernel module dependency cycle: ${[...chain, name].join(' -> ')}`,
        'modules',
      );
    }
    visiting.add(name);
    for (const d of dep.deps) visit(d, [...chain, name]);
    visiting.delete(name);
    done.add(name);
    order.push(dep);
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/** Resolve against a kernel's module tree (lib/modules/<version>). */
export async function resolveKernelModules(
  modulesDir: string,
  wanted: readonly string[],
): Promise<ModuleDep[]> {
  const depText = await readFile(join(modulesDir, 'modules.dep'), 'utf8');
  const builtinText = await readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '');
  return resolveModuleOrder(wanted, parseModulesDep(depText), parseModulesBuiltin(builtinText));
}

/** The module's bytes, decompressed. */
export async function readModule(modulesDir: string, mod: ModuleDep, signal?: AbortSignal): Promise<Buffer> {
  const path = join(modulesDir, mod.path);
  if (path.endsWith('.ko')) return readFile(path);
  if (path.endsWith('.ko.gz')) return gunzipSync(await readFile(path));
  const tool = path.endsWith('.ko.xz') ? 'xz' : path.endsWith('.ko.zst') ? 'zstd' : null;
  if (!tool) throw new InvalidArgumentError(`unknown kernel module format: ${mod.path}`, 'modules');
  const { stdoutBytes } = await run([tool, '-dc', path], { signal });
  return stdoutBytes;
}
