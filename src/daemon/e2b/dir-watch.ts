// Directory walking and watching for envd's filesystem service. forkd's
// guest agent has no inotify, so a watch is *polled*: the directory (the
// whole tree when recursive) is listed every POLL_INTERVAL_MS and each
// entry's type, size, mtime and mode compared with the previous listing.
// That sees creates, removes, writes that change size or mtime, and mode
// changes. It cannot see a rename (it shows as a remove plus a create), a
// write that keeps the size within one millisecond's mtime, or a change
// undone between two polls. Every listing is capped in entries and every
// agent call has a deadline.
import { randomUUID } from 'node:crypto';
import { constants } from 'node:os';
import { posix } from 'node:path';
import type { FileInfo } from '../../engine/agent/types.js';
import { AgentError } from '../../errors.js';
import { sleep, type CallOptions } from '../../util/abort.js';
import { RpcError } from './connect.js';
import { EnvdError } from './target.js';

/** How often a watch lists its directory again. */
export const POLL_INTERVAL_MS = 300;
/** Entries one watch may track: past it the watch ends (resource_exhausted) instead of polling a huge tree. */
export const MAX_WATCH_ENTRIES = 10_000;
/** Events a non-streaming watcher queues between two GetWatcherEvents calls. */
export const MAX_QUEUED_EVENTS = 1_000;
/** A non-streaming watcher nobody asked for events this long is dropped. */
export const WATCHER_IDLE_MS = 10 * 60_000;
/** Non-streaming watchers alive at once, in all and per sandbox. */
export const MAX_WATCHERS = 256;
export const MAX_WATCHERS_PER_SANDBOX = 32;
/** Deadline of one directory listing in the guest. */
const LIST_TIMEOUT_MS = 10_000;

export type WatchEventType = 'create' | 'write' | 'remove' | 'chmod';

export interface WatchEvent {
  /** Path relative to the watched directory (`sub/file.txt` in a recursive watch), as envd names it. */
  name: string;
  type: WatchEventType;
  /** The entry as now listed, or as last seen for a remove. */
  info: FileInfo;
}

/** Relative path → entry. */
export type Tree = ReadonlyMap<string, FileInfo>;

/** What walking needs of the agent (AgentClient has it; tests pass a fake). */
export interface DirLister {
  listDir(path: string, opts?: CallOptions): Promise<FileInfo[]>;
}

/** What a watch needs to know of its sandbox (engine's Sandbox has it). */
export interface SandboxLife {
  readonly isAlive: boolean;
  readonly exited: Promise<unknown>;
}

export interface WalkOptions {
  /** 1 lists the directory itself; 2 also its subdirectories; Infinity the whole tree. */
  maxDepth: number;
  maxEntries: number;
  signal?: AbortSignal | undefined;
}

function hasErrno(err: unknown, ...errnos: number[]): boolean {
  return err instanceof AgentError && err.errno !== undefined && errnos.includes(err.errno);
}

/** The agent's "no such file or directory". */
export function isMissing(err: unknown): boolean {
  return hasErrno(err, constants.errno.ENOENT);
}

/** The agent's "not a directory". */
export function isNotDirectory(err: unknown): boolean {
  return hasErrno(err, constants.errno.ENOTDIR);
}

/**
 * Entries under `root` depth-first in name order (a directory, then what it
 * holds, then its next sibling: the order Go's WalkDir gives envd), each
 * with its path relative to root. Symlinks are not followed. A subdirectory
 * that vanishes while being walked is skipped; errors on root are thrown.
 */
export async function walkDir(
  agent: DirLister,
  root: string,
  opts: WalkOptions,
): Promise<Array<{ rel: string; info: FileInfo }>> {
  const out: Array<{ rel: string; info: FileInfo }> = [];
  const visit = async (rel: string, depth: number): Promise<void> => {
    let entries: FileInfo[];
    try {
      entries = await agent.listDir(rel === '' ? root : posix.join(root, rel), {
        signal: opts.signal,
        timeoutMs: LIST_TIMEOUT_MS,
      });
    } catch (err) {
      if (rel !== '' && (isMissing(err) || isNotDirectory(err))) return;
      throw err;
    }
    for (const info of entries) {
      if (out.length >= opts.maxEntries) {
        throw new RpcError('resource_exhausted', `${root} holds more than ${opts.maxEntries} entries`);
      }
      const child = rel === '' ? info.name : `${rel}/${info.name}`;
      out.push({ rel: child, info });
      if (info.type === 'dir' && depth < opts.maxDepth) await visit(child, depth + 1);
    }
  };
  await visit('', 1);
  return out;
}

/** What changed between two listings, as inotify-like events. Directories' own size and mtime are ignored (their entries' events say it). */
export function diffTrees(before: Tree, after: Tree): WatchEvent[] {
  const events: WatchEvent[] = [];
  for (const [name, now] of after) {
    const was = before.get(name);
    if (!was) {
      events.push({ name, type: 'create', info: now });
    } else if (was.type !== now.type) {
      events.push({ name, type: 'remove', info: was }, { name, type: 'create', info: now });
    } else {
      if (now.type !== 'dir' && (was.size !== now.size || was.mtimeMs !== now.mtimeMs))
        events.push({ name, type: 'write', info: now });
      if (was.mode !== now.mode) events.push({ name, type: 'chmod', info: now });
    }
  }
  for (const [name, was] of before) if (!after.has(name)) events.push({ name, type: 'remove', info: was });
  return events;
}

/** One watched directory: the last listing and how to take the next. */
export class DirPoller {
  private tree: Tree = new Map();

  constructor(
    private readonly agent: DirLister,
    readonly root: string,
    private readonly recursive: boolean,
    private readonly maxEntries = MAX_WATCH_ENTRIES,
  ) {}

  /** Takes the first listing: what later polls compare with. Throws when root is missing or not a directory. */
  async prime(signal?: AbortSignal): Promise<void> {
    this.tree = await this.list(signal);
  }

  /** Lists again and returns what changed since the last listing. */
  async poll(signal?: AbortSignal): Promise<WatchEvent[]> {
    const next = await this.list(signal);
    const events = diffTrees(this.tree, next);
    this.tree = next;
    return events;
  }

  private async list(signal: AbortSignal | undefined): Promise<Tree> {
    const entries = await walkDir(this.agent, this.root, {
      maxDepth: this.recursive ? Infinity : 1,
      maxEntries: this.maxEntries,
      signal,
    });
    return new Map(entries.map((e) => [e.rel, e.info]));
  }
}

function sandboxGone(): EnvdError {
  // 502 is what E2B's proxy answers for a sandbox that stopped; the SDK reads it as "not running".
  return new EnvdError(502, 'the sandbox stopped');
}

const EXITED = Symbol('exited');

/**
 * Polls until `signal` aborts or the sandbox stops, calling `onPoll` after
 * every listing (with no events too, so a caller can send keepalives). It
 * only ever ends by throwing: the abort reason, a sandbox-gone EnvdError, or
 * a listing's error (the watched directory removed, too many entries).
 * `onPoll` is awaited, so a slow consumer slows the polling down.
 */
export async function pollUntilStopped(
  poller: DirPoller,
  life: SandboxLife,
  signal: AbortSignal,
  onPoll: (events: WatchEvent[]) => Promise<void>,
  intervalMs = POLL_INTERVAL_MS,
): Promise<never> {
  const exited: Promise<typeof EXITED> = life.exited.then(
    () => EXITED,
    () => EXITED,
  );
  for (;;) {
    if ((await Promise.race([sleep(intervalMs, signal), exited])) === EXITED || !life.isAlive)
      throw sandboxGone();
    const listing = poller.poll(signal);
    // Whichever loses the race must not become an unhandled rejection.
    listing.catch(() => undefined);
    let events: WatchEvent[] | typeof EXITED;
    try {
      events = await Promise.race([listing, exited]);
    } catch (err) {
      if (!life.isAlive) throw sandboxGone();
      throw err;
    }
    if (events === EXITED) throw sandboxGone();
    await onPoll(events);
  }
}

interface SyncWatcher {
  owner: string;
  root: string;
  includeEntry: boolean;
  events: WatchEvent[];
  error: Error | null;
  controller: AbortController;
  idle: NodeJS.Timeout;
}

/** What GetWatcherEvents hands out. */
export interface TakenEvents {
  root: string;
  includeEntry: boolean;
  events: WatchEvent[];
}

/**
 * envd's non-streaming watchers (CreateWatcher, GetWatcherEvents,
 * RemoveWatcher), which outlive the request that made them. Each belongs to
 * one sandbox (`owner`) and is invisible to others; its queue is capped, an
 * unread one expires, and all stop with their sandbox or with `close`.
 */
export class WatcherTable {
  private readonly watchers = new Map<string, SyncWatcher>();

  /** Starts polling a primed poller in the background; returns the watcher's id. */
  start(owner: string, poller: DirPoller, life: SandboxLife, includeEntry: boolean): string {
    if (this.watchers.size >= MAX_WATCHERS)
      throw new RpcError('resource_exhausted', `${MAX_WATCHERS} watchers exist already; remove some`);
    const mine = [...this.watchers.values()].filter((w) => w.owner === owner).length;
    if (mine >= MAX_WATCHERS_PER_SANDBOX)
      throw new RpcError('resource_exhausted', `this sandbox has ${mine} watchers already; remove some`);
    const id = `w${randomUUID().replaceAll('-', '')}`;
    const idle = setTimeout(() => this.drop(id), WATCHER_IDLE_MS);
    idle.unref();
    const watcher: SyncWatcher = {
      owner,
      root: poller.root,
      includeEntry,
      events: [],
      error: null,
      controller: new AbortController(),
      idle,
    };
    this.watchers.set(id, watcher);
    pollUntilStopped(poller, life, watcher.controller.signal, async (events) => {
      if (watcher.events.length + events.length > MAX_QUEUED_EVENTS) {
        throw new RpcError(
          'resource_exhausted',
          `more than ${MAX_QUEUED_EVENTS} events queued since the last GetWatcherEvents; the watcher stopped`,
        );
      }
      watcher.events.push(...events);
    }).catch((err: unknown) => {
      if (!watcher.controller.signal.aborted)
        watcher.error = err instanceof Error ? err : new Error(String(err));
    });
    return id;
  }

  /** The events queued since the last call; once they are drained, the error that stopped the watcher. */
  take(owner: string, id: string): TakenEvents {
    const watcher = this.get(owner, id);
    watcher.idle.refresh();
    if (watcher.events.length === 0 && watcher.error) throw watcher.error;
    const events = watcher.events;
    watcher.events = [];
    return { root: watcher.root, includeEntry: watcher.includeEntry, events };
  }

  remove(owner: string, id: string): void {
    this.get(owner, id);
    this.drop(id);
  }

  /** Stops every watcher (the daemon is closing). */
  close(): void {
    for (const id of [...this.watchers.keys()]) this.drop(id);
  }

  get size(): number {
    return this.watchers.size;
  }

  private get(owner: string, id: string): SyncWatcher {
    const watcher = this.watchers.get(id);
    if (!watcher || watcher.owner !== owner)
      throw new RpcError('not_found', `watcher with id ${id} not found`);
    return watcher;
  }

  private drop(id: string): void {
    const watcher = this.watchers.get(id);
    if (!watcher) return;
    clearTimeout(watcher.idle);
    watcher.controller.abort();
    this.watchers.delete(id);
  }
}
