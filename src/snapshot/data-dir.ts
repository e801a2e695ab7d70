// Where forkd keeps its state. One data directory holds snapshots, images,
// kernels and the runtime dirs of live sandboxes; every path is derived here.
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { assertValidTag } from './tag.js';

export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FORKD_DATA_DIR) return resolve(env.FORKD_DATA_DIR);
  const xdg = env.XDG_DATA_HOME || join(homedir(), '.local', 'share');
  return join(xdg, 'forkd');
}

export class DataDir {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  get snapshotsDir(): string {
    return join(this.root, 'snapshots');
  }

  snapshotDir(tag: string): string {
    return join(this.snapshotsDir, assertValidTag(tag));
  }

  get runDir(): string {
    return join(this.root, 'run');
  }

  /** A live VM's runtime dir: its sockets, logs and disk overlay. Ids are short so socket paths fit. */
  vmRunDir(id: string): string {
    return join(this.runDir, id);
  }

  /** Downloads, packs being pushed, build caches: anything that can be made again. */
  get cacheDir(): string {
    return join(this.root, 'cache');
  }

  get accelCacheFile(): string {
    return join(this.root, 'accel.json');
  }
}
