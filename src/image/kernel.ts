// The guest kernel: Debian's linux-image-*-amd64 package, fetched with
// `apt-get download`, unpacked with `dpkg-deb -x`, its vmlinuz turned into an
// uncompressed PVH-bootable vmlinux, and its module tree indexed with depmod.
// Cached under <dataDir>/kernels/<kernelVersion>/{vmlinux, modules/, config, kernel.json}.
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CorruptError, MissingDependencyError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import { HostCommandError, run } from '../util/run.js';
import type { ProgressFn } from './types.js';
import { extractVmlinux } from './vmlinux.js';
import { exists, removeTree } from './fsutil.js';

export const KERNEL_METAPACKAGE = 'linux-image-amd64';

export interface KernelInfo {
  /** `uname -r` of the guest, e.g. 6.1.0-56-amd64. */
  version: string;
  packageName: string;
  packageVersion: string;
  dir: string;
  vmlinuxPath: string;
  /** The lib/modules/<version> tree, with modules.dep. */
  modulesDir: string;
  /** The kernel's build configuration (/boot/config-*). */
  configPath: string;
  fetchedAt: string;
}

interface KernelJson {
  version: string;
  packageName: string;
  packageVersion: string;
  fetchedAt: string;
}

export interface KernelOptions {
  dataDir: string;
  /** Ask apt for the current kernel even when one is cached (default: reuse the newest cached). */
  refresh?: boolean | undefined;
  onProgress?: ProgressFn | undefined;
  signal?: AbortSignal | undefined;
}

export function kernelsDir(dataDir: string): string {
  return join(dataDir, 'kernels');
}

function infoFor(dir: string, json: KernelJson): KernelInfo {
  return {
    ...json,
    dir,
    vmlinuxPath: join(dir, 'vmlinux'),
    modulesDir: join(dir, 'modules'),
    configPath: join(dir, 'config'),
  };
}

/** A cached kernel, or null if absent or incomplete. */
export async function readKernel(dataDir: string, version: string): Promise<KernelInfo | null> {
  const dir = join(kernelsDir(dataDir), version);
  try {
    const json = JSON.parse(await readFile(join(dir, 'kernel.json'), 'utf8')) as KernelJson;
    return infoFor(dir, json);
  } catch {
    return null;
  }
}

/** Every cached kernel, newest fetch first. */
export async function listKernels(dataDir: string): Promise<KernelInfo[]> {
  let names: string[];
  try {
    names = await readdir(kernelsDir(dataDir));
  } catch {
    return [];
  }
  const out: KernelInfo[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const k = await readKernel(dataDir, name);
    if (k) out.push(k);
  }
  return out.sort((a, b) => b.fetchedAt.localeCompare(a.fetchedAt));
}

/** Parse `apt-cache show --no-all-versions linux-image-amd64` into the real kernel package. */
export function parseKernelDepends(
  showOutput: string,
): { packageName: string; packageVersion: string } | null {
  const depends = /^Depends:\s*(.*)$/m.exec(showOutput)?.[1] ?? '';
  for (const alt of depends.split(/[,|]/)) {
    const m = /^\s*(linux-image-(\d[^\s(]*))\s*(?:\(\s*=\s*([^)\s]+)\s*\))?/.exec(alt);
    if (m?.[1] && m[2]) {
      const version = /^Version:\s*(\S+)/m.exec(showOutput)?.[1] ?? '';
      return { packageName: m[1], packageVersion: m[3] ?? version };
    }
  }
  return null;
}

/** Which kernel package apt would install for linux-image-amd64. */
export async function resolveKernelPackage(
  signal?: AbortSignal,
): Promise<{ packageName: string; packageVersion: string; version: string }> {
  let stdout = '';
  try {
    ({ stdout } = await run(['apt-cache', 'show', '--no-all-versions', KERNEL_METAPACKAGE], { signal }));
  } catch (err) {
    if (!(err instanceof HostCommandError)) throw err;
  }
  const pkg = parseKernelDepends(stdout);
  if (!pkg) {
    throw new MissingDependencyError(
      `apt does not know the package ${KERNEL_METAPACKAGE} (empty package lists?)`,
      KERNEL_METAPACKAGE,
      { hint: 'run: apt-get update' },
    );
  }
  return { ...pkg, version: pkg.packageName.slice('linux-image-'.length) };
}

/** The guest kernel, downloading and unpacking it on first use. */
export async function ensureKernel(opts: KernelOptions): Promise<KernelInfo> {
  const { dataDir, onProgress, signal } = opts;
  if (!opts.refresh) {
    const cached = await listKernels(dataDir);
    if (cached[0]) return cached[0];
  }
  onProgress?.({ step: 'kernel', detail: `resolving ${KERNEL_METAPACKAGE}` });
  const pkg = await resolveKernelPackage(signal);
  const existing = await readKernel(dataDir, pkg.version);
  if (existing && existing.packageVersion === pkg.packageVersion) return existing;

  await mkdir(kernelsDir(dataDir), { recursive: true });
  const tmp = await mkdtemp(join(kernelsDir(dataDir), '.tmp-'));
  try {
    onProgress?.({
      step: 'kernel',
      detail: `downloading ${pkg.packageName} ${pkg.packageVersion}`,
      fraction: 0,
    });
    const aptOpts = process.getuid?.() === 0 ? ['-o', 'APT::Sandbox::User=root'] : [];
    await run(['apt-get', ...aptOpts, '-q', 'download', `${pkg.packageName}=${pkg.packageVersion}`], {
      cwd: tmp,
      signal,
    });
    const deb = (await readdir(tmp)).find((n) => n.endsWith('.deb'));
    if (!deb) throw new CorruptError(`apt-get download left no .deb in ${tmp}`, tmp);

    onProgress?.({ step: 'kernel', detail: `unpacking ${deb}`, fraction: 0.3 });
    const root = join(tmp, 'pkg');
    await run(['dpkg-deb', '-x', join(tmp, deb), root], { signal });
    await rm(join(tmp, deb));

    let modulesSrc = join(root, 'lib', 'modules', pkg.version);
    if (!(await exists(modulesSrc))) modulesSrc = join(root, 'usr', 'lib', 'modules', pkg.version);
    if (!(await exists(modulesSrc))) throw new CorruptError(`${deb} has no lib/modules/${pkg.version}`, deb);
    const vmlinuz = join(root, 'boot', `vmlinuz-${pkg.version}`);

    onProgress?.({ step: 'kernel', detail: 'extracting vmlinux', fraction: 0.5 });
    await extractVmlinux(vmlinuz, join(tmp, 'vmlinux'), signal);
    throwIfAborted(signal);

    onProgress?.({ step: 'kernel', detail: 'indexing modules (depmod)', fraction: 0.8 });
    // depmod -b wants <base>/lib/modules/<version>.
    await mkdir(join(tmp, 'depmod', 'lib', 'modules'), { recursive: true });
    await rename(modulesSrc, join(tmp, 'depmod', 'lib', 'modules', pkg.version));
    await run(['depmod', '-b', join(tmp, 'depmod'), pkg.version], { signal });
    await rename(join(tmp, 'depmod', 'lib', 'modules', pkg.version), join(tmp, 'modules'));
    await rename(join(root, 'boot', `config-${pkg.version}`), join(tmp, 'config'));
    await removeTree(join(tmp, 'depmod'));
    await removeTree(root);

    const json: KernelJson = {
      version: pkg.version,
      packageName: pkg.packageName,
      packageVersion: pkg.packageVersion,
      fetchedAt: new Date().toISOString(),
    };
    await writeFile(join(tmp, 'kernel.json'), JSON.stringify(json, null, 2) + '\n');
    const dest = join(kernelsDir(dataDir), pkg.version);
    if (existing) await removeTree(dest); // a rebuilt package with the same ABI name
    try {
      await rename(tmp, dest);
    } catch (err) {
      // Another build got there first: use theirs.
      const theirs = await readKernel(dataDir, pkg.version);
      if (!theirs) throw err;
      await removeTree(tmp);
      return theirs;
    }
    onProgress?.({ step: 'kernel', detail: `kernel ${pkg.version} ready`, fraction: 1 });
    return infoFor(dest, json);
  } catch (err) {
    await removeTree(tmp).catch(() => {});
    throw err;
  }
}
