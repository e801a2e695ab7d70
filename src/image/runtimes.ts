// forkd's warm eval runtimes, by kind: the files in guest/runtime/ each one
// needs, where they go in the guest and how it is started. The rootfs
// builder, the image hash and the recipes read it from here, so they cannot
// disagree.
import { join } from 'node:path';
import type { RuntimeKind } from './types.js';

export interface RuntimeDef {
  /** Its files in the repo's guest/runtime/, each copied to RUNTIME_DIR in the guest. */
  files: readonly string[];
  /** The runtime config's argv. */
  argv: readonly string[];
  /** npm packages (by name) the recipe must list for this runtime to start. */
  needsNpm?: readonly string[];
}

/** Where an image holds the runtime files (and a recipe's npm packages, under node_modules). */
export const RUNTIME_DIR = '/usr/lib/forkd';

export const RUNTIMES: Readonly<Record<RuntimeKind, RuntimeDef>> = Object.freeze({
  python: { files: ['python_runtime.py'], argv: ['python3', `${RUNTIME_DIR}/python_runtime.py`] },
  // Debian's nodejs: Node 18, with acorn (the runtime's parser) as a dependency of libnode.
  node: { files: ['node_runtime.js'], argv: ['node', `${RUNTIME_DIR}/node_runtime.js`] },
  // The node runtime driving a Chromium it starts (runtime.json says which kind).
  browser: {
    files: ['node_runtime.js', 'browser.js'],
    argv: ['node', `${RUNTIME_DIR}/node_runtime.js`],
    needsNpm: ['playwright-core'],
  },
  // SQL against the image's PostgreSQL cluster, which it starts (Debian's python3-psycopg2).
  postgres: {
    files: ['python_runtime.py', 'postgres_runtime.py'],
    argv: ['python3', `${RUNTIME_DIR}/postgres_runtime.py`],
  },
  // Notebook cells in an IPython kernel it starts (Debian's python3-ipykernel and jupyter-client).
  jupyter: {
    files: ['python_runtime.py', 'jupyter_runtime.py'],
    argv: ['python3', `${RUNTIME_DIR}/jupyter_runtime.py`],
  },
});

export const RUNTIME_KINDS = Object.keys(RUNTIMES) as readonly RuntimeKind[];

/** Every file of every runtime, once: what a checkout must have. */
export function allRuntimeFiles(): string[] {
  return [...new Set(RUNTIME_KINDS.flatMap((kind) => RUNTIMES[kind].files))];
}

/** A runtime file in a guest/ directory. */
export function runtimeSourcePath(guestDir: string, file: string): string {
  return join(guestDir, 'runtime', file);
}
