// forkd's warm eval runtimes, by kind: the file in guest/runtime/ each one
// is, where it goes in the guest and how it is started. The rootfs builder,
// the image hash and the recipes read it from here, so they cannot disagree.
import { join } from 'node:path';
import type { RuntimeKind } from './types.js';

export interface RuntimeFile {
  /** Its name in the repo's guest/runtime/. */
  name: string;
  /** Where the image holds it. */
  guestPath: string;
  /** The key of its sha256 among an image's hashed files (hash.ts). */
  hashKey: string;
  /** The runtime config's argv for it. */
  argv: readonly string[];
}

const GUEST_DIR = '/usr/lib/forkd';

export const RUNTIME_FILES: Readonly<Record<RuntimeKind, RuntimeFile>> = Object.freeze({
  python: {
    name: 'python_runtime.py',
    guestPath: `${GUEST_DIR}/python_runtime.py`,
    hashKey: 'pythonRuntime',
    argv: ['python3', `${GUEST_DIR}/python_runtime.py`],
  },
  // Debian's nodejs: Node 18, with acorn (the runtime's parser) as a dependency of libnode.
  node: {
    name: 'node_runtime.js',
    guestPath: `${GUEST_DIR}/node_runtime.js`,
    hashKey: 'nodeRuntime',
    argv: ['node', `${GUEST_DIR}/node_runtime.js`],
  },
});

export const RUNTIME_KINDS: readonly RuntimeKind[] = ['python', 'node'];

/** The runtime's file in a guest/ directory. */
export function runtimeSourcePath(guestDir: string, kind: RuntimeKind): string {
  return join(guestDir, 'runtime', RUNTIME_FILES[kind].name);
}
