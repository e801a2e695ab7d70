// Root filesystems for recipes with a disk: `mmdebstrap --variant=minbase`
// with the recipe's packages, cached as a directory tree keyed by (suite,
// packages) so that changing only the agent never re-runs the bootstrap; then,
// per image, a hard-linked copy of that tree gets forkd's guest files and is
// turned into a sparse ext4 image with `mkfs.ext4 -d` (no loop mount, no root
// needed beyond what mmdebstrap itself needs).
import { createHash } from 'node:crypto';
import {
  lstat,
  mkdir,
  mkdtemp,
  open,
  readFile,
  readdir,
  rename,
  rm,
  writeFile,
  chmod,
} from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, MissingDependencyError } from '../errors.js';
import { throwIfAborted } from '../util/abort.js';
import { exists, mountsUnder, removeTree, treeBytes } from './fsutil.js';
import { run } from '../util/run.js';
import { RUNTIME_DIR, RUNTIMES, runtimeSourcePath } from './runtimes.js';
import type { GuestSources } from './sources.js';
import type { ProgressFn, RuntimeConfig } from './types.js';

export const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
export const DEFAULT_SECURITY_MIRROR = 'http://deb.debian.org/debian-security';
/** Bump when the bootstrap invocation or its clean-up changes. */
const ROOTFS_TREE_FORMAT = 2;
/** Free space left in the ext4 image (it is sparse, so this costs nothing until written). */
const HEADROOM_BYTES = 1024 * 1024 * 1024;

/** Paths removed from the bootstrapped tree: caches and docs a sandbox never needs. */
const PRUNE = [
  'var/cache/apt/archives',
  'var/cache/apt/pkgcache.bin',
  'var/cache/apt/srcpkgcache.bin',
  'var/lib/apt/lists',
  'usr/share/doc',
  'usr/share/man',
  'usr/share/info',
  'usr/share/locale',
  'var/log/bootstrap.log',
  'var/log/apt',
  'var/log/dpkg.log',
];

/** Which Debian archive a sources entry is: the main one, its security one, or neither. */
type Archive = 'main' | 'security';

/**
 * The Debian mirror the host's apt uses for the main archive (or for the
 * security archive), from sources.list (one-line form) and
 * sources.list.d/*.sources (deb822 form).
 */
export function parseMirror(texts: readonly string[], archive: Archive = 'main'): string | null {
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const m = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
      if (m?.[1] && archiveOf(m[1], m[2] ?? '') === archive) return m[1].replace(/\/+$/, '');
    }
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.*)$`, 'mi').exec(stanza)?.[1]?.trim() ?? '';
      if (!/\bdeb\b/.test(field('Types'))) continue;
      const suites = field('Suites').split(/\s+/);
      for (const uri of field('URIs').split(/\s+/)) {
        if (uri && suites.some((s) => archiveOf(uri, s) === archive)) return uri.replace(/\/+$/, '');
      }
    }
  }
  return null;
}

function archiveOf(uri: string, suite: string): Archive | null {
  if (!/^https?:\/\//.test(uri) || !/debian/.test(uri)) return null;
  if (/-security$/.test(suite)) return 'security';
  if (/security/.test(uri) || /-(updates|backports)$/.test(suite)) return null;
  return 'main';
}

export interface Mirrors {
  main: string;
  security: string;
}

export async function hostMirrors(): Promise<Mirrors> {
  const texts: string[] = [];
  texts.push(await readFile('/etc/apt/sources.list', 'utf8').catch(() => ''));
  const dir = '/etc/apt/sources.list.d';
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.endsWith('.list') || name.endsWith('.sources')) {
      texts.push(await readFile(join(dir, name), 'utf8').catch(() => ''));
    }
  }
  return {
    main: parseMirror(texts, 'main') ?? DEFAULT_MIRROR,
    security: parseMirror(texts, 'security') ?? DEFAULT_SECURITY_MIRROR,
  };
}

/**
 * The apt sources of a guest root: the suite itself and, for a release that
 * gets them (not unstable), its updates and security suites, so a browser
 * or a TLS library in a sandbox is the patched one.
 */
export function aptSources(suite: string, mirrors: Mirrors): string[] {
  const lines = [`deb ${mirrors.main} ${suite} main`];
  if (!/^(sid|unstable|experimental|rc-buggy)$/.test(suite)) {
    lines.push(`deb ${mirrors.main} ${suite}-updates main`, `deb ${mirrors.security} ${suite}-security main`);
  }
  return lines;
}

export function treeCacheKey(suite: string, packages: readonly string[]): string {
  const canonical = JSON.stringify({
    format: ROOTFS_TREE_FORMAT,
    variant: 'minbase',
    suite,
    packages: [...packages].sort(),
  });
  return createHash('sha256').update(canonical).digest('hex').slice(0, 16);
}

export interface TreeOptions {
  dataDir: string;
  suite: string;
  packages: readonly string[];
  /** The main archive (default: the host's apt mirror); the security one is the host's too. */
  mirror?: string | undefined;
  onProgress?: ProgressFn | undefined;
  signal?: AbortSignal | undefined;
}

/** mmdebstrap output lines -> a rough fraction of the whole run. */
const PHASES: Array<[RegExp, number]> = [
  [/^I: automatically chosen/, 0.02],
  [/^I: running apt-get update/, 0.04],
  [/^I: downloading packages/, 0.1],
  [/^I: extracting archives/, 0.35],
  [/^I: installing essential packages/, 0.45],
  [/^I: installing remaining packages/, 0.6],
  [/^I: cleaning package lists/, 0.95],
  [/^I: success/, 1],
];

/** apt's words for a package it cannot install, as mmdebstrap passes them on. */
const UNKNOWN_PACKAGE = [
  /^E: Unable to locate package (\S+)/,
  /^E: Package '([^']+)' has no installation candidate/,
  /^E: Couldn't find any package by (?:glob|regex) '([^']+)'/,
];

/** Single-quote a path for the shell that runs an mmdebstrap hook. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * The bootstrapped tree for (suite, packages), from cache or by running
 * mmdebstrap (one apt run: nearly twice as fast as debootstrap here, and it
 * takes the updates and security suites). Downloaded .debs are kept in
 * cache/debs and hard-linked into every later bootstrap, so recipes that
 * share a base system download it once.
 */
export async function ensureRootfsTree(opts: TreeOptions): Promise<string> {
  const { dataDir, suite, packages, onProgress, signal } = opts;
  const cacheDir = join(dataDir, 'cache');
  const dest = join(cacheDir, `rootfs-${treeCacheKey(suite, packages)}`);
  if (await exists(join(dest, 'etc', 'os-release'))) return dest;
  if (process.getuid?.() !== 0) {
    throw new MissingDependencyError('building a root filesystem runs mmdebstrap, which needs root', 'root', {
      hint: 'run the first build of this recipe as root (later builds reuse the cached tree)',
    });
  }
  const debs = join(cacheDir, 'debs');
  await mkdir(debs, { recursive: true });
  const tmp = await mkdtemp(join(cacheDir, '.tmp-rootfs-'));
  try {
    const host = await hostMirrors();
    const mirrors = { ...host, ...(opts.mirror ? { main: opts.mirror } : {}) };
    const target = join(tmp, 'root');
    onProgress?.({
      step: 'rootfs',
      detail: `mmdebstrap ${suite} (${packages.join(', ')}) from ${mirrors.main}`,
      fraction: 0,
    });
    let fraction = 0;
    const missing: string[] = [];
    const archives = '"$1"/var/cache/apt/archives';
    await run(
      [
        'mmdebstrap',
        '--variant=minbase',
        '--mode=root',
        '--format=directory',
        `--include=${packages.join(',')}`,
        // The shared .deb cache: in before apt downloads, out after it has.
        '--skip=download/empty',
        '--skip=cleanup/apt/cache',
        `--setup-hook=mkdir -p ${archives} && find ${shellQuote(debs)} -maxdepth 1 -name '*.deb' -exec cp -l -t ${archives}/ {} +`,
        `--customize-hook=find ${archives} -maxdepth 1 -name '*.deb' -exec cp -ln -t ${shellQuote(debs)}/ {} + || true`,
        suite,
        target,
        ...aptSources(suite, mirrors),
      ],
      {
        signal,
        captureStdout: false,
        onLine: (line) => {
          for (const re of UNKNOWN_PACKAGE) {
            const name = re.exec(line)?.[1];
            if (name && !missing.includes(name)) missing.push(name);
          }
          for (const [re, f] of PHASES) {
            if (re.test(line) && f > fraction) {
              fraction = f;
              onProgress?.({
                step: 'rootfs',
                detail: line.replace(/^I: /, 'mmdebstrap: ').replace(/\.\.\.$/, ''),
                fraction: f * 0.9,
              });
              break;
            }
          }
        },
      },
    ).catch((err: unknown) => {
      if (missing.length === 0) throw err;
      throw new InvalidArgumentError(`Debian ${suite} has no package ${missing.join(', ')}`, 'packages', {
        hint: `check the name (apt-cache search, or packages.debian.org/${suite})`,
      });
    });
    throwIfAborted(signal);
    await removeMountsOnly(target);
    for (const p of PRUNE) await rm(join(target, p), { recursive: true, force: true });
    await mkdir(join(target, 'var/cache/apt/archives/partial'), { recursive: true });
    await mkdir(join(target, 'var/lib/apt/lists/partial'), { recursive: true });
    try {
      await rename(target, dest);
    } catch (err) {
      if (!(await exists(join(dest, 'etc', 'os-release')))) throw err;
    }
    await removeTree(tmp);
    onProgress?.({ step: 'rootfs', detail: 'bootstrap done', fraction: 0.9 });
    return dest;
  } catch (err) {
    await removeTree(tmp).catch(() => {});
    throw err;
  }
}

async function removeMountsOnly(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) await run(['umount', '-l', point]).catch(() => {});
}

export interface RootfsInput {
  tree: string;
  sources: GuestSources;
  runtime: RuntimeConfig | null;
  /** Adds the recipe's own files to the copied tree, after forkd's. */
  addExtras?: ((tree: string) => Promise<void>) | undefined;
  /** Scratch directory on the same file system as `tree` (for hard links). */
  workDir: string;
  outPath: string;
  signal?: AbortSignal | undefined;
  onProgress?: ProgressFn | undefined;
}

/** Replace (never write through) the file at `rel` inside `root`. */
async function put(root: string, rel: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const path = join(root, rel);
  await mkdir(dirname(path), { recursive: true });
  await rm(path, { force: true }); // breaks a hard link to the cached tree, or a symlink
  await writeFile(path, data, { mode });
  await chmod(path, mode);
}

/** Where /sbin really is inside the tree (merged-/usr makes it a link to usr/sbin). */
async function sbinDir(root: string): Promise<string> {
  const st = await lstat(join(root, 'sbin')).catch(() => null);
  return st?.isSymbolicLink() ? 'usr/sbin' : 'sbin';
}

/** Copy the cached tree (hard links), add forkd's guest files, make the ext4 image. */
export async function buildRootfs(input: RootfsInput): Promise<{ bytes: number; contentBytes: number }> {
  const { sources, signal, onProgress } = input;
  const tree = join(input.workDir, 'tree');
  try {
    onProgress?.({ step: 'rootfs', detail: 'adding forkd guest files', fraction: 0.9 });
    // Hard links make the copy instant; fall back to a real copy across file systems.
    await run(['cp', '-al', input.tree, tree], { signal }).catch(async () => {
      await removeTree(tree);
      await run(['cp', '-a', input.tree, tree], { signal });
    });
    await put(tree, 'usr/bin/forkd-agent', await readFile(sources.agentPath), 0o755);
    await put(tree, 'usr/lib/forkd/busybox', await readFile(sources.busyboxPath), 0o755);
    await put(tree, `${await sbinDir(tree)}/forkd-init`, await readFile(sources.forkdInitPath), 0o755);
    if (input.runtime) {
      for (const name of RUNTIMES[input.runtime.kind].files) {
        const file = await readFile(runtimeSourcePath(sources.guestDir, name));
        await put(tree, `${RUNTIME_DIR.slice(1)}/${name}`, file);
      }
      await put(tree, 'etc/forkd/runtime.json', JSON.stringify(input.runtime) + '\n');
    }
    await put(tree, 'etc/hostname', 'forkd\n');
    await put(
      tree,
      'etc/hosts',
      '127.0.0.1\tlocalhost\n127.0.1.1\tforkd\n::1\tlocalhost ip6-localhost ip6-loopback\n',
    );
    await put(tree, 'etc/resolv.conf', 'nameserver 10.0.2.3\n');
    await put(tree, 'etc/fstab', '# the root file system is mounted by the forkd initramfs\n');
    await input.addExtras?.(tree);

    const contentBytes = await treeBytes(tree);
    const size = Math.ceil((contentBytes * 1.1 + HEADROOM_BYTES) / (1 << 20)) * (1 << 20);
    onProgress?.({
      step: 'rootfs',
      detail: `mkfs.ext4 (${Math.round(size / (1 << 20))} MiB, sparse)`,
      fraction: 0.95,
    });
    const fh = await open(input.outPath, 'w');
    await fh.truncate(size);
    await fh.close();
    await run(
      [
        'mkfs.ext4',
        '-F',
        '-q',
        '-L',
        'forkd-root',
        '-m',
        '0',
        // No journal: a sandbox's disk is never recovered after a crash (a
        // snapshot resumes the very kernel that wrote it, page cache and
        // all), and a journal doubles every metadata write, each landing in
        // a sandbox's disk layer and in every diff made of it (17 MiB of a
        // pandas install's diff were journal).
        '-O',
        '^has_journal',
        // Initialise inode tables now, so the guest's ext4lazyinit never
        // writes them into every parent's disk layer.
        '-E',
        'lazy_itable_init=0',
        '-d',
        tree,
        input.outPath,
      ],
      { signal },
    );
    onProgress?.({ step: 'rootfs', detail: 'root filesystem ready', fraction: 1 });
    return { bytes: size, contentBytes };
  } finally {
    await removeTree(tree);
  }
}
