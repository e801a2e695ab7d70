// envd's filesystem layer without a VM: entry mapping and permission strings,
// the watch diff and walk, the poll loop's ends, the non-streaming watcher
// table, and the Connect and /files routes over real HTTP against an
// in-memory fake of the guest agent.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants } from 'node:os';
import { posix } from 'node:path';
import { gzipSync } from 'node:zlib';
import Fastify from 'fastify';
import type { ExecRequest, ExecResult, FileInfo, FileType } from '../../../src/engine/agent/types.js';
import type { Sandbox } from '../../../src/engine/index.js';
import { AgentError } from '../../../src/errors.js';
import type { App } from '../../../src/daemon/context.js';
import { acceptConnectBodies, RpcError } from '../../../src/daemon/e2b/connect.js';
import {
  diffTrees,
  DirPoller,
  MAX_QUEUED_EVENTS,
  pollUntilStopped,
  walkDir,
  WatcherTable,
  type Tree,
  type WatchEvent,
} from '../../../src/daemon/e2b/dir-watch.js';
import { registerEnvdFileRoutes } from '../../../src/daemon/e2b/files-http.js';
import {
  entryInfoOf,
  permissionsOf,
  registerFilesystemService,
  resolvedPath,
} from '../../../src/daemon/e2b/filesystem-service.js';
import type { E2bRecord } from '../../../src/daemon/e2b/records.js';
import { EnvdError, type E2bLookup } from '../../../src/daemon/e2b/target.js';

function info(name: string, type: FileType, extra: Partial<FileInfo> = {}): FileInfo {
  return { name, type, size: 0, mode: type === 'dir' ? 0o755 : 0o644, mtimeMs: 1_000, ...extra };
}

function agentError(
  code: 'ENOENT' | 'ENOTDIR' | 'EISDIR' | 'EEXIST' | 'ENOTEMPTY',
  path: string,
): AgentError {
  return new AgentError(`${code}: ${path}`, constants.errno[code]);
}

interface FakeNode {
  type: FileType;
  data: Buffer;
  mode: number;
  mtimeMs: number;
}

/** The agent calls the filesystem layer makes, over an in-memory tree. */
class FakeAgent {
  readonly nodes = new Map<string, FakeNode>([
    ['/', { type: 'dir', data: Buffer.alloc(0), mode: 0o755, mtimeMs: 0 }],
  ]);
  private clock = 1_700_000_000_000;
  calls = 0;

  private tick(): number {
    return (this.clock += 1_000);
  }

  private node(path: string): FakeNode {
    const n = this.nodes.get(path);
    if (!n) throw agentError('ENOENT', path);
    return n;
  }

  private parentOf(path: string): void {
    const parent = this.nodes.get(posix.dirname(path));
    if (!parent) throw agentError('ENOENT', path);
    if (parent.type !== 'dir') throw agentError('ENOTDIR', path);
  }

  private infoOf(path: string, n: FakeNode): FileInfo {
    return {
      name: posix.basename(path) || '/',
      type: n.type,
      size: n.data.length,
      mode: n.mode,
      mtimeMs: n.mtimeMs,
    };
  }

  async stat(path: string): Promise<FileInfo> {
    this.calls++;
    return this.infoOf(path, this.node(path));
  }

  async listDir(path: string): Promise<FileInfo[]> {
    this.calls++;
    const n = this.node(path);
    if (n.type !== 'dir') throw agentError('ENOTDIR', path);
    return [...this.nodes.entries()]
      .filter(([p]) => p !== '/' && posix.dirname(p) === path)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([p, c]) => this.infoOf(p, c));
  }

  async readFile(path: string): Promise<Buffer> {
    const n = this.node(path);
    if (n.type === 'dir') throw agentError('EISDIR', path);
    return n.data;
  }

  async writeFile(path: string, data: Buffer | string, opts: { parents?: boolean } = {}): Promise<void> {
    if (opts.parents) await this.mkdir(posix.dirname(path), { parents: true });
    this.parentOf(path);
    if (this.nodes.get(path)?.type === 'dir') throw agentError('EISDIR', path);
    const mode = this.nodes.get(path)?.mode ?? 0o644;
    this.nodes.set(path, { type: 'file', data: Buffer.from(data), mode, mtimeMs: this.tick() });
  }

  async mkdir(path: string, opts: { parents?: boolean } = {}): Promise<void> {
    const existing = this.nodes.get(path);
    if (existing) {
      if (opts.parents && existing.type === 'dir') return;
      throw agentError('EEXIST', path);
    }
    if (opts.parents && !this.nodes.has(posix.dirname(path))) await this.mkdir(posix.dirname(path), opts);
    this.parentOf(path);
    this.nodes.set(path, { type: 'dir', data: Buffer.alloc(0), mode: 0o755, mtimeMs: this.tick() });
  }

  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    const n = this.node(path);
    const inside = [...this.nodes.keys()].filter((p) => p.startsWith(`${path}/`));
    if (n.type === 'dir' && inside.length > 0 && !opts.recursive) throw agentError('ENOTEMPTY', path);
    for (const p of [path, ...inside]) this.nodes.delete(p);
  }

  /** Only `mv -f -T -- src dst`, with rename(2)'s refusals. */
  async exec(req: ExecRequest): Promise<ExecResult> {
    const result = (exitCode: number, stderr = ''): ExecResult => ({
      exitCode,
      signal: null,
      timedOut: false,
      truncated: false,
      stdout: Buffer.alloc(0),
      stderr: Buffer.from(stderr),
    });
    const [cmd, , , , src, dst] = req.args ?? [];
    assert.equal(cmd, 'mv');
    assert.deepEqual(req.args?.slice(1, 4), ['-f', '-T', '--']);
    const n = this.nodes.get(src!);
    if (!n) return result(1, `mv: can't rename '${src}': No such file or directory\n`);
    if (this.nodes.get(dst!)?.type === 'dir' && n.type !== 'dir')
      return result(1, `mv: can't rename '${src}': Is a directory\n`);
    const moving = [...this.nodes.entries()].filter(([p]) => p === src || p.startsWith(`${src}/`));
    for (const [p] of moving) this.nodes.delete(p);
    for (const [p, v] of moving) this.nodes.set(dst! + p.slice(src!.length), v);
    return result(0);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe('entry mapping', () => {
  test('permissions read as Go FileMode.String() does', () => {
    assert.equal(permissionsOf('file', 0o644), '-rw-r--r--');
    assert.equal(permissionsOf('file', 0o600), '-rw-------');
    assert.equal(permissionsOf('file', 0o755), '-rwxr-xr-x');
    assert.equal(permissionsOf('dir', 0o755), 'drwxr-xr-x');
    assert.equal(permissionsOf('symlink', 0o777), 'Lrwxrwxrwx');
    assert.equal(permissionsOf('dir', 0o1777), 'dtrwxrwxrwx');
    assert.equal(permissionsOf('file', 0o4755), 'urwxr-xr-x');
    assert.equal(permissionsOf('file', 0o2755), 'grwxr-xr-x');
    assert.equal(permissionsOf('other', 0o600), '?rw-------');
    assert.equal(permissionsOf('file', 0), '----------');
  });

  test("an entry is envd's EntryInfo JSON: size as a string, mode without special bits, RFC 3339 time", () => {
    const entry = entryInfoOf(
      info('a.txt', 'file', { size: 12, mode: 0o4755, mtimeMs: 1_700_000_000_123 }),
      '/x/a.txt',
    );
    assert.deepEqual(entry, {
      name: 'a.txt',
      type: 'FILE_TYPE_FILE',
      path: '/x/a.txt',
      size: '12',
      mode: 0o755,
      permissions: 'urwxr-xr-x',
      owner: 'root',
      group: 'root',
      modifiedTime: '2023-11-14T22:13:20.123Z',
    });
    assert.equal(entryInfoOf(info('d', 'dir'), '/d').type, 'FILE_TYPE_DIRECTORY');
    assert.equal(entryInfoOf(info('l', 'symlink'), '/l').type, 'FILE_TYPE_SYMLINK');
    assert.equal(entryInfoOf(info('s', 'other'), '/s').type, 'FILE_TYPE_UNSPECIFIED');
  });
  test('paths resolve as envd resolves them: relative under /home/user, cleaned', () => {
    assert.equal(resolvedPath('a/../b/'), '/home/user/b');
    assert.equal(resolvedPath('/tmp/x/'), '/tmp/x');
    assert.equal(resolvedPath('/tmp//y/./z'), '/tmp/y/z');
    assert.equal(resolvedPath('/'), '/');
    assert.equal(resolvedPath(''), '/home/user');
    assert.equal(resolvedPath('~/q'), '/home/user/q');
  });
});

describe('watch diff and walk', () => {
  const tree = (...entries: FileInfo[]): Tree => new Map(entries.map((e) => [e.name, e]));

  test('creates, removes, writes (size or mtime) and mode changes; a directory changing is not a write', () => {
    const before = tree(
      info('same', 'file', { size: 1 }),
      info('grown', 'file', { size: 1 }),
      info('touched', 'file', { mtimeMs: 1 }),
      info('chmodded', 'file'),
      info('gone', 'file'),
      info('dir', 'dir', { size: 4096, mtimeMs: 1 }),
      info('flip', 'file'),
    );
    const after = tree(
      info('same', 'file', { size: 1 }),
      info('grown', 'file', { size: 2 }),
      info('touched', 'file', { mtimeMs: 2 }),
      info('chmodded', 'file', { mode: 0o600 }),
      info('dir', 'dir', { size: 8192, mtimeMs: 2 }),
      info('flip', 'dir'),
      info('new', 'file'),
    );
    const got = diffTrees(before, after).map((e) => `${e.type} ${e.name}`);
    assert.deepEqual(got, [
      'write grown',
      'write touched',
      'chmod chmodded',
      'remove flip',
      'create flip',
      'create new',
      'remove gone',
    ]);
    assert.deepEqual(diffTrees(before, before), []);
  });

  test('walk is depth-first in name order, bounded in depth and entries, and skips a vanished subdirectory', async () => {
    const agent = new FakeAgent();
    for (const d of ['/r', '/r/a', '/r/a/deep', '/r/b']) await agent.mkdir(d);
    await agent.writeFile('/r/a/x', 'x');
    await agent.writeFile('/r/a/deep/y', 'y');
    await agent.writeFile('/r/c', 'c');
    const rels = async (maxDepth: number): Promise<string[]> =>
      (await walkDir(agent, '/r', { maxDepth, maxEntries: 100 })).map((e) => e.rel);
    assert.deepEqual(await rels(1), ['a', 'b', 'c']);
    assert.deepEqual(await rels(2), ['a', 'a/deep', 'a/x', 'b', 'c']);
    assert.deepEqual(await rels(Infinity), ['a', 'a/deep', 'a/deep/y', 'a/x', 'b', 'c']);
    await assert.rejects(walkDir(agent, '/r', { maxDepth: Infinity, maxEntries: 3 }), (err: unknown) => {
      assert.ok(err instanceof RpcError);
      assert.equal(err.code, 'resource_exhausted');
      return true;
    });
    const vanishing = {
      listDir: async (path: string) => {
        if (path === '/r/a') throw agentError('ENOENT', path);
        return agent.listDir(path);
      },
    };
    assert.deepEqual(
      (await walkDir(vanishing, '/r', { maxDepth: Infinity, maxEntries: 100 })).map((e) => e.rel),
      ['a', 'b', 'c'],
    );
    await assert.rejects(walkDir(agent, '/nope', { maxDepth: 1, maxEntries: 100 }), /ENOENT/);
  });

  test('the poll loop reports changes, and ends on abort and when the sandbox exits', async () => {
    const agent = new FakeAgent();
    await agent.mkdir('/w');
    const poller = new DirPoller(agent, '/w', true);
    await poller.prime();
    const life = { isAlive: true, exited: deferred() };
    const seen: WatchEvent[] = [];
    const controller = new AbortController();
    const loop = pollUntilStopped(
      poller,
      {
        get isAlive() {
          return life.isAlive;
        },
        exited: life.exited.promise,
      },
      controller.signal,
      async (events) => {
        seen.push(...events);
      },
      10,
    );
    loop.catch(() => undefined);
    await agent.mkdir('/w/sub');
    await agent.writeFile('/w/sub/f', 'hello');
    while (seen.length < 2) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(
      seen.map((e) => `${e.type} ${e.name}`),
      ['create sub', 'create sub/f'],
    );
    life.isAlive = false;
    life.exited.resolve();
    await assert.rejects(loop, (err: unknown) => err instanceof EnvdError && err.status === 502);

    const aborted = new AbortController();
    const stopped = pollUntilStopped(
      poller,
      { isAlive: true, exited: new Promise(() => undefined) },
      aborted.signal,
      async () => undefined,
      10,
    );
    aborted.abort(new Error('client gone'));
    await assert.rejects(stopped, /client gone/);
  });
});

describe('non-streaming watchers', () => {
  test('a watcher is its sandbox only, queues events between takes, and stops when its queue overflows', async () => {
    const agent = new FakeAgent();
    await agent.mkdir('/w');
    const table = new WatcherTable();
    try {
      const poller = new DirPoller(agent, '/w', false);
      await poller.prime();
      const life = { isAlive: true, exited: new Promise<void>(() => undefined) };
      const id = table.start('sbx-a', poller, life, false);
      assert.throws(() => table.take('sbx-b', id), /not found/);
      await agent.writeFile('/w/one', '1');
      let events: WatchEvent[] = [];
      while (events.length === 0) {
        await new Promise((r) => setTimeout(r, 50));
        events = table.take('sbx-a', id).events;
      }
      assert.deepEqual(
        events.map((e) => `${e.type} ${e.name}`),
        ['create one'],
      );
      for (let i = 0; i <= MAX_QUEUED_EVENTS; i++)
        agent.nodes.set(`/w/f${i}`, { type: 'file', data: Buffer.alloc(0), mode: 0o644, mtimeMs: 1 });
      const deadline = Date.now() + 5_000;
      let error: unknown = null;
      while (!error && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
        try {
          table.take('sbx-a', id);
        } catch (err) {
          error = err;
        }
      }
      assert.ok(error instanceof RpcError && error.code === 'resource_exhausted', String(error));
      table.remove('sbx-a', id);
      assert.equal(table.size, 0);
      assert.throws(() => table.remove('sbx-a', id), /not found/);
    } finally {
      table.close();
    }
  });
});

describe('routes over HTTP with a fake agent', () => {
  const TOKEN = 'tok';
  const agent = new FakeAgent();
  const death = deferred();
  const sandbox = {
    id: 'vm-1',
    agent,
    get isAlive() {
      return true;
    },
    exited: death.promise,
  } as unknown as Sandbox;
  const record = {
    id: 'sbx1',
    envdAccessToken: TOKEN,
    trafficAccessToken: 'other',
    state: 'running',
  } as E2bRecord;
  const lookup: E2bLookup = {
    record: (id) => (id === record.id ? record : null),
    liveSandbox: () => sandbox,
  };
  let app: App;
  let url: string;
  const headers = { 'e2b-sandbox-id': 'sbx1', 'x-access-token': TOKEN };

  before(async () => {
    app = Fastify({ bodyLimit: 1024 * 1024 });
    // As the daemon's: a buffering octet-stream parser on the root, which /files must not use.
    app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_r, body, done) =>
      done(null, body),
    );
    await app.register(async (child) => {
      const sbx = child as unknown as App;
      acceptConnectBodies(sbx);
      registerFilesystemService(sbx, lookup);
      registerEnvdFileRoutes(sbx, lookup);
    });
    url = await app.listen({ host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    await app.close();
  });

  async function rpc(
    method: string,
    body: unknown,
  ): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${url}/e2b-sandbox/filesystem.Filesystem/${method}`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  test('upload (multipart, octet-stream, gzip), download, and their refusals', async () => {
    const form = new FormData();
    form.append('file', new Blob(['hello']), '/home/user/a.txt');
    form.append('file', new Blob([Buffer.from([0, 1, 2, 255])]), 'rel/b.bin');
    let res = await fetch(`${url}/e2b-sandbox/files`, { method: 'POST', headers, body: form });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [
      { name: 'a.txt', type: 'file', path: '/home/user/a.txt' },
      { name: 'b.bin', type: 'file', path: '/home/user/rel/b.bin' },
    ]);
    res = await fetch(`${url}/e2b-sandbox/files?path=/home/user/rel/b.bin`, { headers });
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), Buffer.from([0, 1, 2, 255]));

    const octet = { ...headers, 'content-type': 'application/octet-stream' };
    res = await fetch(`${url}/e2b-sandbox/files?path=raw.txt`, {
      method: 'POST',
      headers: octet,
      body: 'raw',
    });
    assert.deepEqual(await res.json(), [{ name: 'raw.txt', type: 'file', path: '/home/user/raw.txt' }]);
    res = await fetch(`${url}/e2b-sandbox/files?path=gz.txt`, {
      method: 'POST',
      headers: { ...octet, 'content-encoding': 'gzip' },
      body: gzipSync('zipped'),
    });
    assert.equal(res.status, 200);
    assert.equal(agent.nodes.get('/home/user/gz.txt')?.data.toString(), 'zipped');

    const refused = async (r: Response, status: number, pattern: RegExp): Promise<void> => {
      assert.equal(r.status, status);
      const body = (await r.json()) as { code: number; message: string };
      assert.equal(body.code, status);
      assert.match(body.message, pattern);
    };
    await refused(await fetch(`${url}/e2b-sandbox/files?path=nope`, { headers }), 404, /ENOENT/);
    await refused(await fetch(`${url}/e2b-sandbox/files?path=/home`, { headers }), 400, /directory/);
    await refused(
      await fetch(`${url}/e2b-sandbox/files?path=x`, { headers: { ...headers, 'x-access-token': 'bad' } }),
      401,
      /token/,
    );
    await refused(
      await fetch(`${url}/e2b-sandbox/files`, { method: 'POST', headers: octet, body: 'x' }),
      400,
      /path query parameter/,
    );
    await refused(
      await fetch(`${url}/e2b-sandbox/files?path=/home/user`, { method: 'POST', headers: octet, body: 'x' }),
      400,
      /directory/,
    );
    const twice = new FormData();
    twice.append('file', new Blob(['1']), 'same');
    twice.append('file', new Blob(['2']), 'same');
    await refused(
      await fetch(`${url}/e2b-sandbox/files`, { method: 'POST', headers, body: twice }),
      400,
      /same path/,
    );
    await refused(
      await fetch(`${url}/e2b-sandbox/files?path=bad.gz`, {
        method: 'POST',
        headers: { ...octet, 'content-encoding': 'gzip' },
        body: 'not gzip',
      }),
      400,
      /gzip/,
    );
  });

  test('a body past 64 MiB is a 413, plain or gzip-bombed, and nothing is written', async () => {
    const octet = { ...headers, 'content-type': 'application/octet-stream' };
    const big = Buffer.alloc(64 * 1024 * 1024 + 1);
    let res = await fetch(`${url}/e2b-sandbox/files?path=big`, { method: 'POST', headers: octet, body: big });
    assert.equal(res.status, 413);
    assert.match(((await res.json()) as { message: string }).message, /limit/);
    res = await fetch(`${url}/e2b-sandbox/files?path=bomb`, {
      method: 'POST',
      headers: { ...octet, 'content-encoding': 'gzip' },
      body: gzipSync(big),
    });
    assert.equal(res.status, 413);
    assert.equal(agent.nodes.has('/home/user/big'), false);
    assert.equal(agent.nodes.has('/home/user/bomb'), false);
  });

  test('Stat, ListDir (depth), MakeDir, Move, Remove as envd answers them', async () => {
    await agent.writeFile('/home/user/tree/a/deep.txt', 'deep', { parents: true });
    let r = await rpc('Stat', { path: 'tree/a/deep.txt' });
    assert.equal(r.status, 200);
    assert.deepEqual(
      { ...(r.json.entry as object), modifiedTime: 'x' },
      {
        name: 'deep.txt',
        type: 'FILE_TYPE_FILE',
        path: '/home/user/tree/a/deep.txt',
        size: '4',
        mode: 0o644,
        permissions: '-rw-r--r--',
        owner: 'root',
        group: 'root',
        modifiedTime: 'x',
      },
    );
    r = await rpc('Stat', { path: '/home/user/missing' });
    assert.deepEqual([r.status, r.json.code], [404, 'not_found']);
    r = await rpc('Stat', { path: '/home/user/tree/a/deep.txt/below' });
    assert.equal(r.json.code, 'not_found');

    const paths = (j: Record<string, unknown>): string[] =>
      (j.entries as Array<{ path: string }>).map((e) => e.path);
    r = await rpc('ListDir', { path: '/home/user/tree', depth: 1 });
    assert.deepEqual(paths(r.json), ['/home/user/tree/a']);
    r = await rpc('ListDir', { path: '/home/user/tree', depth: 2 });
    assert.deepEqual(paths(r.json), ['/home/user/tree/a', '/home/user/tree/a/deep.txt']);
    r = await rpc('ListDir', { path: '/home/user/tree/a/deep.txt' });
    assert.equal(r.json.code, 'invalid_argument');
    r = await rpc('ListDir', { path: '/home/user/nothing' });
    assert.equal(r.json.code, 'not_found');

    r = await rpc('MakeDir', { path: '/home/user/made/deeper' });
    assert.equal(r.status, 200);
    assert.equal((r.json.entry as { type: string }).type, 'FILE_TYPE_DIRECTORY');
    r = await rpc('MakeDir', { path: '/home/user/made/deeper' });
    assert.equal(r.json.code, 'already_exists');
    r = await rpc('MakeDir', { path: '/home/user/tree/a/deep.txt' });
    assert.equal(r.json.code, 'invalid_argument');
    r = await rpc('MakeDir', { path: '/home/user/tree/a/deep.txt/below' });
    assert.equal(r.json.code, 'invalid_argument', 'a file among the parents is no "already exists"');

    r = await rpc('Move', { source: '/home/user/tree', destination: '/home/user/moved/tree2' });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.equal((r.json.entry as { path: string }).path, '/home/user/moved/tree2');
    assert.equal(agent.nodes.get('/home/user/moved/tree2/a/deep.txt')?.data.toString(), 'deep');
    r = await rpc('Move', { source: '/home/user/tree', destination: '/home/user/x' });
    assert.equal(r.json.code, 'not_found');
    r = await rpc('Move', { source: '/home/user/raw.txt', destination: '/home/user/made' });
    assert.equal(r.json.code, 'invalid_argument');

    r = await rpc('Remove', { path: '/home/user/moved' });
    assert.deepEqual([r.status, r.json], [200, {}]);
    assert.equal(agent.nodes.has('/home/user/moved/tree2/a'), false);
    r = await rpc('Remove', { path: '/home/user/moved' });
    assert.equal(r.status, 200, 'removing what is not there succeeds, as RemoveAll does');
  });

  test('WatchDir streams start, then events, and stops when the client goes away', async () => {
    await agent.mkdir('/home/user/watched', { parents: true });
    const controller = new AbortController();
    const json = Buffer.from(JSON.stringify({ path: '/home/user/watched', recursive: true }));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(json.length, 1);
    const res = await fetch(`${url}/e2b-sandbox/filesystem.Filesystem/WatchDir`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/connect+json' },
      body: Buffer.concat([head, json]),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let buffered = Buffer.alloc(0);
    const next = async (): Promise<Record<string, unknown>> => {
      for (;;) {
        if (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
          const length = buffered.readUInt32BE(1);
          const message = JSON.parse(buffered.subarray(5, 5 + length).toString()) as Record<string, unknown>;
          buffered = buffered.subarray(5 + length);
          return message;
        }
        const { value, done } = await reader.read();
        assert.ok(!done, 'the stream ended early');
        buffered = Buffer.concat([buffered, Buffer.from(value)]);
      }
    };
    assert.deepEqual(await next(), { start: {} });
    await agent.writeFile('/home/user/watched/sub/new.txt', 'x', { parents: true });
    assert.deepEqual(await next(), { filesystem: { name: 'sub', type: 'EVENT_TYPE_CREATE' } });
    assert.deepEqual(await next(), { filesystem: { name: 'sub/new.txt', type: 'EVENT_TYPE_CREATE' } });
    await agent.remove('/home/user/watched/sub', { recursive: true });
    const removed = [await next(), await next()].map((m) => (m.filesystem as { name: string }).name).sort();
    assert.deepEqual(removed, ['sub', 'sub/new.txt']);
    controller.abort();
    const before = agent.calls;
    await new Promise((r) => setTimeout(r, 1_000));
    assert.ok(agent.calls - before <= 1, 'polling stopped with the client');
  });

  test('a watch of a missing directory or a file is refused in the stream', async () => {
    const json = Buffer.from(JSON.stringify({ path: '/home/user/raw.txt' }));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(json.length, 1);
    const res = await fetch(`${url}/e2b-sandbox/filesystem.Filesystem/WatchDir`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'application/connect+json' },
      body: Buffer.concat([head, json]),
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.readUInt8(0), 0x02, 'only the end-of-stream envelope');
    const end = JSON.parse(bytes.subarray(5).toString()) as { error: { code: string } };
    assert.equal(end.error.code, 'invalid_argument');
  });

  test('CreateWatcher, GetWatcherEvents, RemoveWatcher', async () => {
    await agent.mkdir('/home/user/polled', { parents: true });
    let r = await rpc('CreateWatcher', { path: '/home/user/polled', includeEntry: true });
    const watcherId = r.json.watcherId as string;
    assert.match(watcherId, /^w/);
    await agent.writeFile('/home/user/polled/f', 'x');
    let events: Array<{ name: string; type: string; entry?: { path: string } }> = [];
    for (let i = 0; i < 50 && events.length === 0; i++) {
      await new Promise((res) => setTimeout(res, 100));
      r = await rpc('GetWatcherEvents', { watcherId });
      events = r.json.events as typeof events;
    }
    assert.deepEqual(
      events.map((e) => [e.name, e.type, e.entry?.path]),
      [['f', 'EVENT_TYPE_CREATE', '/home/user/polled/f']],
    );
    r = await rpc('RemoveWatcher', { watcher_id: watcherId });
    assert.deepEqual(r.json, {});
    r = await rpc('GetWatcherEvents', { watcherId });
    assert.equal(r.json.code, 'not_found');
  });
});
