// sandbox.files, E2B style: read (text or bytes), write, list, stat, exists,
// remove, makeDir. Paths are absolute guest paths.
import type { Controller } from './controller.js';
import { NotFoundError } from './errors.js';
import type { RequestOpts } from './http.js';
import type { FileEntry } from './types.js';

/** A file or directory in the sandbox. */
export interface EntryInfo {
  name: string;
  /** Absolute path in the sandbox. */
  path: string;
  type: FileEntry['type'];
  size: number;
  /** Permission bits as a number (e.g. 0o644). */
  mode: number;
  mtimeMs: number;
}

/** `files.read` options. */
export interface FileReadOpts extends RequestOpts {
  /** `text` (default) decodes UTF-8; `bytes` returns the raw bytes. */
  format?: 'text' | 'bytes';
}

/** `files.write` options. */
export interface FileWriteOpts extends RequestOpts {
  /** Permission bits, e.g. `0o755`. */
  mode?: number;
}

/** `files.remove` options. */
export interface FileRemoveOpts extends RequestOpts {
  /** Remove directories and their contents; default true, as E2B's remove does. */
  recursive?: boolean;
}

function entry(path: string, e: FileEntry): EntryInfo {
  return { name: e.name, path, type: e.type, size: e.size, mode: e.mode, mtimeMs: e.mtime_ms };
}

function join(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}

/** `sandbox.files`. */
export class Files {
  /** @internal Reached through `sandbox.files`. */
  constructor(
    private readonly controller: Controller,
    private readonly sandboxId: string,
  ) {}

  /** Reads a file as raw bytes. */
  read(path: string, opts: FileReadOpts & { format: 'bytes' }): Promise<Uint8Array>;
  /** Reads a file as UTF-8 text. */
  read(path: string, opts?: FileReadOpts & { format?: 'text' }): Promise<string>;
  /** Reads a file. */
  read(path: string, opts?: FileReadOpts): Promise<string | Uint8Array>;
  async read(path: string, opts?: FileReadOpts): Promise<string | Uint8Array> {
    const bytes = await this.controller.readFile(this.sandboxId, path, opts);
    return opts?.format === 'bytes' ? bytes : new TextDecoder().decode(bytes);
  }

  /** Writes a file (strings as UTF-8), creating missing parent directories. */
  write(path: string, data: string | Uint8Array, opts?: FileWriteOpts): Promise<void> {
    return this.controller.writeFile(this.sandboxId, path, data, opts);
  }

  /** Lists a directory. */
  async list(path: string, opts?: RequestOpts): Promise<EntryInfo[]> {
    const entries = await this.controller.listDir(this.sandboxId, path, opts);
    return entries.map((e) => entry(join(path, e.name), e));
  }

  /** Describes one file or directory; NotFoundError if missing. */
  async stat(path: string, opts?: RequestOpts): Promise<EntryInfo> {
    return entry(path, await this.controller.stat(this.sandboxId, path, opts));
  }

  /** True if the path exists. */
  async exists(path: string, opts?: RequestOpts): Promise<boolean> {
    try {
      await this.controller.stat(this.sandboxId, path, opts);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  }

  /** Removes a file, or a directory with everything in it. */
  remove(path: string, opts?: FileRemoveOpts): Promise<void> {
    return this.controller.remove(this.sandboxId, path, { ...opts, recursive: opts?.recursive ?? true });
  }

  /** Creates a directory and any missing parents. */
  makeDir(path: string, opts?: RequestOpts): Promise<void> {
    return this.controller.mkdir(this.sandboxId, path, { ...opts, parents: true });
  }
}
