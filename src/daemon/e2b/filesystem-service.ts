// envd's filesystem.Filesystem service (Stat, MakeDir, Move, ListDir, Remove,
// WatchDir and the non-streaming watchers) over forkd's guest agent. Entries
// go out in envd's EntryInfo JSON. Where the agent offers less than envd:
// Move is an exec of `mv` (the agent has no rename), watching is polled
// (dir-watch.ts: no inotify), and owner/group are reported as root (the
// agent's stat carries no uid/gid; the agent is the guest's PID 1 and runs
// every command as root, so whatever the sandbox's API and commands create
// is root's; files an image ships under other users are misreported).
// Symlinks are reported as symlinks without their target.
import { posix } from 'node:path';
import type { FileInfo, FileType } from '../../engine/agent/types.js';
import type { Sandbox } from '../../engine/index.js';
import { deadlineSignal, type CallOptions } from '../../util/abort.js';
import type { App } from '../context.js';
import { registerServerStream, registerUnary, RpcError, type RpcContext } from './connect.js';
import {
  DirPoller,
  isMissing,
  isNotDirectory,
  pollUntilStopped,
  walkDir,
  WatcherTable,
  type WatchEvent,
} from './dir-watch.js';
import { e2bTarget, guestPathOf, SANDBOX_PREFIX, type E2bLookup, type E2bTarget } from './target.js';

/** Deadline of one agent call for a filesystem RPC. */
const CALL_TIMEOUT_MS = 30_000;
/** Deadline of a whole ListDir (many agent calls when deep). */
const LIST_TIMEOUT_MS = 60_000;
/** Entries one ListDir may return. */
export const MAX_LIST_ENTRIES = 50_000;
/** Deadline of the guest's `mv` (across file systems it copies). */
const MOVE_TIMEOUT_MS = 120_000;
/** See the header: the agent reports no ownership. */
const GUEST_OWNER = 'root';

export type FileTypeJson =
  'FILE_TYPE_UNSPECIFIED' | 'FILE_TYPE_FILE' | 'FILE_TYPE_DIRECTORY' | 'FILE_TYPE_SYMLINK';

/** envd's EntryInfo in proto3 JSON (int64 size as a string, Timestamp as RFC 3339). */
export interface EntryInfoJson {
  name: string;
  type: FileTypeJson;
  path: string;
  size: string;
  mode: number;
  permissions: string;
  owner: string;
  group: string;
  modifiedTime: string;
}

const FILE_TYPE_JSON: Record<FileType, FileTypeJson> = {
  file: 'FILE_TYPE_FILE',
  dir: 'FILE_TYPE_DIRECTORY',
  symlink: 'FILE_TYPE_SYMLINK',
  // Sockets, FIFOs, devices: envd has no type for them and the SDK skips them in listings.
  other: 'FILE_TYPE_UNSPECIFIED',
};

const EVENT_TYPE_JSON: Record<WatchEvent['type'], string> = {
  create: 'EVENT_TYPE_CREATE',
  write: 'EVENT_TYPE_WRITE',
  remove: 'EVENT_TYPE_REMOVE',
  chmod: 'EVENT_TYPE_CHMOD',
};

/** An E2B path as the guest path envd would use: under /home/user when relative, cleaned (`a/../b/` is `b`), as Go's filepath.Abs does. */
export function resolvedPath(path: string): string {
  const clean = posix.normalize(guestPathOf(path));
  return clean.length > 1 && clean.endsWith('/') ? clean.slice(0, -1) : clean;
}

/**
 * A mode as envd prints it, which is Go's FileMode.String(): type letters
 * (d directory, L symlink, ? anything else irregular), then u/g/t for
 * setuid, setgid and sticky, then rwxrwxrwx; `-` when no letter applies.
 */
export function permissionsOf(type: FileType, mode: number): string {
  let letters = '';
  if (type === 'dir') letters += 'd';
  if (type === 'symlink') letters += 'L';
  if (mode & 0o4000) letters += 'u';
  if (mode & 0o2000) letters += 'g';
  if (mode & 0o1000) letters += 't';
  if (type === 'other') letters += '?';
  let rwx = '';
  for (let bit = 8; bit >= 0; bit--) rwx += mode & (1 << bit) ? 'rwx'[(8 - bit) % 3] : '-';
  return (letters || '-') + rwx;
}

/** An agent FileInfo at guest path `path` as envd's EntryInfo. `mode` is the permission bits only, as envd's. */
export function entryInfoOf(info: FileInfo, path: string): EntryInfoJson {
  return {
    name: info.name,
    type: FILE_TYPE_JSON[info.type],
    path,
    size: String(info.size),
    mode: info.mode & 0o777,
    permissions: permissionsOf(info.type, info.mode),
    owner: GUEST_OWNER,
    group: GUEST_OWNER,
    modifiedTime: new Date(info.mtimeMs).toISOString(),
  };
}

/** A watch event as envd's FilesystemEvent; the entry (when asked for) is left out for removes. */
export function filesystemEventOf(event: WatchEvent, root: string, includeEntry: boolean): object {
  return {
    name: event.name,
    type: EVENT_TYPE_JSON[event.type],
    ...(includeEntry && event.type !== 'remove'
      ? { entry: entryInfoOf(event.info, posix.join(root, event.name)) }
      : {}),
  };
}

type Message = Record<string, unknown>;

function messageOf(message: unknown): Message {
  if (message === null || message === undefined) return {};
  if (typeof message !== 'object' || Array.isArray(message))
    throw new RpcError('invalid_argument', 'the request message must be a JSON object');
  return message as Message;
}

/** A field by its JSON name or (as proto3 JSON parsers must accept) its proto name. */
function field(m: Message, jsonName: string, protoName = jsonName): unknown {
  return m[jsonName] ?? m[protoName];
}

function stringField(m: Message, jsonName: string, protoName?: string): string {
  const v = field(m, jsonName, protoName);
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new RpcError('invalid_argument', `${jsonName} must be a string`);
  return v;
}

function boolField(m: Message, jsonName: string, protoName?: string): boolean {
  const v = field(m, jsonName, protoName);
  if (v === undefined) return false;
  if (typeof v !== 'boolean') throw new RpcError('invalid_argument', `${jsonName} must be a boolean`);
  return v;
}

function uintField(m: Message, jsonName: string): number {
  const v = field(m, jsonName);
  if (v === undefined) return 0;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
    throw new RpcError('invalid_argument', `${jsonName} must be a non-negative integer`);
  return n;
}

function callOpts(ctx: RpcContext): CallOptions {
  return { signal: ctx.signal, timeoutMs: CALL_TIMEOUT_MS };
}

/** The agent's errno as envd's answer where the daemon's generic mapping would say something else. */
function asRpcError(err: unknown, path: string, notDirectory: 'not_found' | 'invalid_argument'): unknown {
  if (isMissing(err)) return new RpcError('not_found', `path not found: ${path}`);
  if (isNotDirectory(err))
    return notDirectory === 'not_found'
      ? new RpcError('not_found', `path not found: ${path} (a parent is not a directory)`)
      : new RpcError('invalid_argument', `path is not a directory: ${path}`);
  return err;
}

async function stat(sandbox: Sandbox, path: string, opts: CallOptions): Promise<FileInfo> {
  try {
    return await sandbox.agent.stat(path, opts);
  } catch (err) {
    throw asRpcError(err, path, 'not_found');
  }
}

async function makeDir(t: E2bTarget, path: string, ctx: RpcContext): Promise<object> {
  const existing = await stat(t.sandbox, path, callOpts(ctx)).catch((err: unknown) => {
    if (err instanceof RpcError && err.code === 'not_found') return null;
    throw err;
  });
  // The SDK reads already_exists as "makeDir returned false".
  if (existing?.type === 'dir') throw new RpcError('already_exists', `directory already exists: ${path}`);
  if (existing)
    throw new RpcError('invalid_argument', `path already exists but it is not a directory: ${path}`);
  // A file among the parents is ENOTDIR, which the generic mapping would call already_exists (makeDir: false).
  await t.sandbox.agent.mkdir(path, { parents: true }, callOpts(ctx)).catch((err: unknown) => {
    throw asRpcError(err, path, 'invalid_argument');
  });
  return { entry: entryInfoOf(await stat(t.sandbox, path, callOpts(ctx)), path) };
}

/** `mv`'s complaint as a Connect error: the caller's mistakes are invalid_argument, not internal. */
function moveError(stderr: string, source: string, destination: string): RpcError {
  const text = stderr.trim().split('\n').slice(-3).join('; ') || 'mv failed';
  const message = `moving ${source} to ${destination}: ${text}`;
  if (/No such file/i.test(text)) return new RpcError('not_found', message);
  if (/Permission denied|Operation not permitted|Read-only/i.test(text))
    return new RpcError('permission_denied', message);
  if (/Is a directory|Not a directory|not empty|Invalid argument|into itself|same file|exists/i.test(text))
    return new RpcError('invalid_argument', message);
  return new RpcError('internal', message);
}

async function move(t: E2bTarget, source: string, destination: string, ctx: RpcContext): Promise<object> {
  await stat(t.sandbox, source, callOpts(ctx));
  // envd creates the destination's parents, as rename(2) does not.
  await t.sandbox.agent
    .mkdir(posix.dirname(destination), { parents: true }, callOpts(ctx))
    .catch((err: unknown) => {
      throw asRpcError(err, destination, 'invalid_argument');
    });
  // -T: rename(2)'s meaning (replace an empty directory, refuse a file onto a directory), not "move into".
  const result = await t.sandbox.agent.exec(
    {
      args: ['mv', '-f', '-T', '--', source, destination],
      timeoutMs: MOVE_TIMEOUT_MS,
      maxOutputBytes: 64 * 1024,
    },
    {},
    { signal: ctx.signal, timeoutMs: MOVE_TIMEOUT_MS + 5_000 },
  );
  if (result.timedOut)
    throw new RpcError('deadline_exceeded', `moving ${source} took more than ${MOVE_TIMEOUT_MS} ms`);
  if (result.exitCode !== 0) throw moveError(result.stderr.toString('utf8'), source, destination);
  return { entry: entryInfoOf(await stat(t.sandbox, destination, callOpts(ctx)), destination) };
}

async function listDir(t: E2bTarget, path: string, depth: number, ctx: RpcContext): Promise<object> {
  const signal = deadlineSignal({ signal: ctx.signal, timeoutMs: LIST_TIMEOUT_MS }, `listing ${path}`);
  try {
    const entries = await walkDir(t.sandbox.agent, path, {
      maxDepth: depth,
      maxEntries: MAX_LIST_ENTRIES,
      signal,
    });
    return { entries: entries.map((e) => entryInfoOf(e.info, posix.join(path, e.rel))) };
  } catch (err) {
    throw asRpcError(err, path, 'invalid_argument');
  }
}

async function remove(t: E2bTarget, path: string, ctx: RpcContext): Promise<object> {
  try {
    await t.sandbox.agent.remove(path, { recursive: true }, callOpts(ctx));
  } catch (err) {
    // envd removes with Go's RemoveAll: nothing there is success.
    if (!isMissing(err) && !isNotDirectory(err)) throw err;
  }
  return {};
}

/** A primed poller for a watch request: not_found / invalid_argument when the path is no directory. */
async function watchedDir(
  t: E2bTarget,
  path: string,
  recursive: boolean,
  ctx: RpcContext,
): Promise<DirPoller> {
  const poller = new DirPoller(t.sandbox.agent, path, recursive);
  try {
    await poller.prime(ctx.signal);
  } catch (err) {
    throw asRpcError(err, path, 'invalid_argument');
  }
  return poller;
}

async function watchDir(
  t: E2bTarget,
  m: Message,
  ctx: RpcContext,
  send: (message: object) => Promise<void>,
): Promise<void> {
  const path = resolvedPath(stringField(m, 'path'));
  const includeEntry = boolField(m, 'includeEntry', 'include_entry');
  const poller = await watchedDir(t, path, boolField(m, 'recursive'), ctx);
  await send({ start: {} });
  // The SDK asks for keepalives every N seconds (Keepalive-Ping-Interval); none when it does not.
  const keepaliveMs = Number(ctx.request.headers['keepalive-ping-interval'] ?? 0) * 1000;
  let lastSentAt = Date.now();
  await pollUntilStopped(poller, t.sandbox, ctx.signal, async (events) => {
    for (const event of events) {
      await send({ filesystem: filesystemEventOf(event, path, includeEntry) });
      lastSentAt = Date.now();
    }
    if (keepaliveMs > 0 && Date.now() - lastSentAt >= keepaliveMs) {
      await send({ keepalive: {} });
      lastSentAt = Date.now();
    }
  });
}

/** Registers every filesystem.Filesystem method under E2B_SANDBOX_URL. */
export function registerFilesystemService(app: App, lookup: E2bLookup): void {
  const base = `${SANDBOX_PREFIX}/filesystem.Filesystem`;
  const watchers = new WatcherTable();
  app.addHook('onClose', async () => watchers.close());
  const unary = (
    method: string,
    handler: (t: E2bTarget, m: Message, ctx: RpcContext) => Promise<object>,
  ): void =>
    registerUnary(app, `${base}/${method}`, async (message, ctx) =>
      handler(e2bTarget(ctx.request, lookup), messageOf(message), ctx),
    );

  unary('Stat', async (t, m, ctx) => {
    const path = resolvedPath(stringField(m, 'path'));
    return { entry: entryInfoOf(await stat(t.sandbox, path, callOpts(ctx)), path) };
  });
  unary('MakeDir', async (t, m, ctx) => makeDir(t, resolvedPath(stringField(m, 'path')), ctx));
  unary('Move', async (t, m, ctx) =>
    move(t, resolvedPath(stringField(m, 'source')), resolvedPath(stringField(m, 'destination')), ctx),
  );
  unary('ListDir', async (t, m, ctx) =>
    listDir(t, resolvedPath(stringField(m, 'path')), uintField(m, 'depth') || 1, ctx),
  );
  unary('Remove', async (t, m, ctx) => remove(t, resolvedPath(stringField(m, 'path')), ctx));
  registerServerStream(app, `${base}/WatchDir`, async (message, ctx, send) =>
    watchDir(e2bTarget(ctx.request, lookup), messageOf(message), ctx, send),
  );

  unary('CreateWatcher', async (t, m, ctx) => {
    const path = resolvedPath(stringField(m, 'path'));
    const poller = await watchedDir(t, path, boolField(m, 'recursive'), ctx);
    const includeEntry = boolField(m, 'includeEntry', 'include_entry');
    return { watcherId: watchers.start(t.record.id, poller, t.sandbox, includeEntry) };
  });
  unary('GetWatcherEvents', async (t, m) => {
    const taken = watchers.take(t.record.id, stringField(m, 'watcherId', 'watcher_id'));
    return { events: taken.events.map((e) => filesystemEventOf(e, taken.root, taken.includeEntry)) };
  });
  unary('RemoveWatcher', async (t, m) => {
    watchers.remove(t.record.id, stringField(m, 'watcherId', 'watcher_id'));
    return {};
  });
}
