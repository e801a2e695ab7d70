// Host facts the jail needs: whether /bin and /lib are symlinks into /usr,
// which optional system files exist, and the absolute path of a program
// (a confined program starts with an empty environment, so no PATH lookup).
import { accessSync, constants, existsSync, lstatSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { HostLayout } from './confine.js';

let cached: HostLayout | undefined;

export function hostLayout(): HostLayout {
  cached ??= {
    mergedUsr: lstatSync('/lib', { throwIfNoEntry: false })?.isSymbolicLink() ?? false,
    present: new Set(['/lib64', '/etc/ld.so.cache'].filter((path) => existsSync(path))),
  };
  return cached;
}

/** `program` as an absolute path, looked up in PATH like a shell would; unchanged if not found. */
export function resolveProgram(program: string, path = process.env.PATH ?? '/usr/bin:/bin'): string {
  if (isAbsolute(program) || program.includes('/')) return program;
  for (const dir of path.split(':')) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return program;
}
