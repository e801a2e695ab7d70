// Where the files that go into a guest come from: the repo's guest/ tree (init
// scripts, the agent binary built by `make -C guest`, the warm runtimes) and
// the host's static busybox. Missing pieces are MissingDependencyErrors that
// say how to produce them.
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MissingDependencyError } from '../errors.js';
import { exists } from './fsutil.js';
import { allRuntimeFiles, runtimeSourcePath } from './runtimes.js';

export interface GuestSources {
  guestDir: string;
  agentPath: string;
  initPath: string;
  forkdInitPath: string;
  busyboxPath: string;
}

export interface SourceOverrides {
  /** The repo's guest/ directory (default: found next to this module). */
  guestDir?: string | undefined;
  /** The agent binary (default: <guestDir>/build/forkd-agent). */
  agentPath?: string | undefined;
  /** A static busybox (default: /bin/busybox from busybox-static). */
  busyboxPath?: string | undefined;
}

/** The repo's guest/ directory: walk up from this module until guest/init/init exists. */
export function defaultGuestDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'guest', 'init', 'init'))) return join(dir, 'guest');
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new MissingDependencyError('cannot find the guest/ directory of the forkd checkout', 'guest', {
    hint: 'pass guestDir, or run forkd from its repository',
  });
}

/** Is this an ELF executable without a program interpreter (statically linked)? */
export async function isStaticElf(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const ehdr = Buffer.alloc(64);
    await fh.read(ehdr, 0, 64, 0);
    if (ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2) return false;
    const phoff = Number(ehdr.readBigUInt64LE(32));
    const phentsize = ehdr.readUInt16LE(54);
    const phnum = ehdr.readUInt16LE(56);
    const phdrs = Buffer.alloc(phentsize * phnum);
    await fh.read(phdrs, 0, phdrs.length, phoff);
    for (let i = 0; i < phnum; i++) if (phdrs.readUInt32LE(i * phentsize) === 3) return false; // PT_INTERP
    return true;
  } finally {
    await fh.close();
  }
}

export async function findBusybox(override?: string): Promise<string> {
  const candidates = override ? [override] : ['/bin/busybox', '/usr/bin/busybox'];
  for (const path of candidates) {
    if ((await exists(path)) && (await isStaticElf(path))) return path;
  }
  throw new MissingDependencyError('a statically linked busybox is needed for the guest', 'busybox-static', {
    hint: 'install it with: apt-get install -y busybox-static (or run scripts/setup.sh)',
  });
}

/** Locate every guest input; `needRuntime` also requires the warm runtimes. */
export async function locateSources(overrides: SourceOverrides, needRuntime: boolean): Promise<GuestSources> {
  const guestDir = resolve(overrides.guestDir ?? defaultGuestDir());
  const src: GuestSources = {
    guestDir,
    agentPath: resolve(overrides.agentPath ?? join(guestDir, 'build', 'forkd-agent')),
    initPath: join(guestDir, 'init', 'init'),
    forkdInitPath: join(guestDir, 'init', 'forkd-init'),
    busyboxPath: await findBusybox(overrides.busyboxPath),
  };
  if (!(await exists(src.agentPath))) {
    throw new MissingDependencyError(`the guest agent is not built (${src.agentPath})`, 'forkd-agent', {
      hint: `build it with: make -C ${guestDir} (or npm run build)`,
    });
  }
  const runtimes = needRuntime ? allRuntimeFiles().map((name) => runtimeSourcePath(guestDir, name)) : [];
  for (const path of [src.initPath, src.forkdInitPath, ...runtimes]) {
    if (!(await exists(path))) {
      throw new MissingDependencyError(`guest file missing: ${path}`, path, {
        hint: 'the forkd checkout is incomplete',
      });
    }
  }
  return src;
}
