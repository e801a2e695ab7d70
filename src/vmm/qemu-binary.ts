// Finds the QEMU binary and its version. The version is part of every
// snapshot's identity: a vmstate only restores on the QEMU that wrote it.
import { IncompatibleError, MissingDependencyError } from '../errors.js';
import { run } from '../util/run.js';

export interface QemuInstallation {
  binary: string;
  /** e.g. "7.2.22"; package suffix removed. */
  version: string;
  /** The whole first line of `--version`, including the distribution's package version. */
  versionLine: string;
}

const cache = new Map<string, Promise<QemuInstallation>>();

export function findQemu(binary = process.env.FORKD_QEMU ?? 'qemu-system-x86_64'): Promise<QemuInstallation> {
  let found = cache.get(binary);
  if (!found) {
    found = probeQemu(binary);
    cache.set(binary, found);
    found.catch(() => cache.delete(binary));
  }
  return found;
}

async function probeQemu(binary: string): Promise<QemuInstallation> {
  try {
    const { stdout } = await run([binary, '--version'], { signal: AbortSignal.timeout(10_000) });
    const versionLine = stdout.split('\n')[0]?.trim() ?? '';
    const version = /version (\d+\.\d+\.\d+)/.exec(versionLine)?.[1];
    if (!version)
      throw new IncompatibleError(
        `unrecognised version output: ${versionLine}`,
        'version x.y.z',
        versionLine,
      );
    return { binary, version, versionLine };
  } catch (err) {
    throw new MissingDependencyError(`QEMU not usable (${binary}): ${(err as Error).message}`, binary, {
      hint: 'install it: apt-get install qemu-system-x86 qemu-utils',
      cause: err,
    });
  }
}
