// File requests, PING, HYGIENE and channel behaviour against the real agent.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { AgentError } from '../../../src/errors.js';
import { startAgent, type AgentFixture } from './agent-harness.js';

let fx: AgentFixture;
before(async () => {
  fx = await startAgent();
});
after(async () => {
  await fx.stop();
});

function isErrno(errno: number) {
  return (err: unknown) => err instanceof AgentError && err.errno === errno;
}

void test('all 256 byte values round-trip through writeFile/readFile', async () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const path = join(fx.dir, 'bytes.bin');
  await fx.client.writeFile(path, all);
  assert.deepEqual(readFileSync(path), all);
  assert.deepEqual(await fx.client.readFile(path), all);
});

void test('a 3 MiB file round-trips byte-exact', async () => {
  const data = randomBytes(3 * 1024 * 1024);
  const path = join(fx.dir, 'three.bin');
  await fx.client.writeFile(path, data);
  assert.ok(readFileSync(path).equals(data));
  assert.ok((await fx.client.readFile(path)).equals(data));
});

void test('files larger than one frame are written and read in slices', async () => {
  const data = randomBytes(40 * 1024 * 1024 + 123);
  const path = join(fx.dir, 'big.bin');
  await fx.client.writeFile(path, data, {}, { timeoutMs: 60_000 });
  assert.ok(readFileSync(path).equals(data));
  assert.ok((await fx.client.readFile(path, { timeoutMs: 60_000 })).equals(data));
});

void test('empty files, /proc files and append', async () => {
  const path = join(fx.dir, 'empty');
  await fx.client.writeFile(path, '');
  assert.equal((await fx.client.readFile(path)).length, 0);
  await fx.client.writeFile(path, 'a');
  await fx.client.writeFile(path, 'b', { append: true });
  assert.equal((await fx.client.readFile(path)).toString(), 'ab');
  const status = (await fx.client.readFile(`/proc/${fx.proc.pid}/status`)).toString();
  assert.match(status, /^Name:\s+forkd-agent/m);
});

void test('writeFile with mode and parents', async () => {
  const path = join(fx.dir, 'a/b/c/script.sh');
  await fx.client.writeFile(path, '#!/bin/sh\necho hi\n', { mode: 0o750, parents: true });
  assert.equal(lstatSync(path).mode & 0o7777, 0o750);
  const r = await fx.client.exec({ args: [path] });
  assert.equal(r.stdout.toString(), 'hi\n');
  // An explicit mode also applies to an existing file.
  chmodSync(path, 0o600);
  await fx.client.writeFile(path, 'x', { mode: 0o640 });
  assert.equal(lstatSync(path).mode & 0o7777, 0o640);
  await assert.rejects(fx.client.writeFile(join(fx.dir, 'nope/x'), 'x'), isErrno(2));
});

void test('listDir and stat report type, size, mode and mtime', async () => {
  const d = join(fx.dir, 'list');
  mkdirSync(d);
  writeFileSync(join(d, 'b.txt'), 'hello');
  chmodSync(join(d, 'b.txt'), 0o604);
  mkdirSync(join(d, 'a-dir'));
  symlinkSync('b.txt', join(d, 'c-link'));
  const entries = await fx.client.listDir(d);
  assert.deepEqual(
    entries.map((e) => [e.name, e.type]),
    [
      ['a-dir', 'dir'],
      ['b.txt', 'file'],
      ['c-link', 'symlink'],
    ],
  );
  const file = entries[1]!;
  assert.equal(file.size, 5);
  assert.equal(file.mode, 0o604);
  assert.ok(Math.abs(file.mtimeMs - lstatSync(join(d, 'b.txt')).mtimeMs) < 2);
  const st = await fx.client.stat(join(d, 'b.txt'));
  assert.deepEqual(st, file);
  assert.equal((await fx.client.stat(join(d, 'c-link'))).type, 'symlink');
  assert.equal((await fx.client.stat(d)).type, 'dir');
  await assert.rejects(fx.client.listDir(join(d, 'b.txt')), isErrno(20));
});

void test('mkdir and remove', async () => {
  const base = join(fx.dir, 'tree');
  await fx.client.mkdir(join(base, 'x/y'), { parents: true });
  await fx.client.mkdir(join(base, 'x/y'), { parents: true }); // idempotent with parents
  await assert.rejects(fx.client.mkdir(join(base, 'x/y')), isErrno(17));
  await fx.client.mkdir(join(base, 'm'), { mode: 0o700 });
  assert.equal(lstatSync(join(base, 'm')).mode & 0o7777, 0o700);
  writeFileSync(join(base, 'x/y/f'), 'f');
  await assert.rejects(fx.client.remove(join(base, 'x')), isErrno(39));
  await fx.client.remove(join(base, 'x/y/f'));
  await fx.client.remove(join(base, 'x'), { recursive: true });
  await fx.client.remove(join(base, 'm'));
  assert.deepEqual(await fx.client.listDir(base), []);
  await assert.rejects(fx.client.remove(join(base, 'x')), isErrno(2));
});

void test('missing files are AgentErrors carrying ENOENT', async () => {
  const missing = join(fx.dir, 'does-not-exist');
  for (const call of [
    () => fx.client.readFile(missing),
    () => fx.client.stat(missing),
    () => fx.client.listDir(missing),
    () => fx.client.remove(missing),
  ]) {
    await assert.rejects(call(), (err: unknown) => {
      assert.ok(err instanceof AgentError);
      assert.equal(err.errno, 2);
      assert.equal(err.code, 'agent_error');
      assert.match(err.message, /does-not-exist: No such file or directory \(ENOENT\)/);
      return true;
    });
  }
  await assert.rejects(fx.client.readFile(fx.dir), isErrno(21));
});

void test('ping reports version, pid and no runtime', async () => {
  const p = await fx.client.ping();
  assert.equal(p.version, 2);
  assert.equal(p.pid, fx.proc.pid);
  assert.equal(p.runtime, null);
  assert.ok(p.uptimeMs >= 0);
});

void test('hygiene never sets the host clock here, and vary reaches execs', async () => {
  const before = await fx.client.exec({ shell: 'echo "[$FORKD_VARY]"' });
  assert.equal(before.stdout.toString(), '[]\n');
  const r = await fx.client.hygiene({
    timeUnixNs: BigInt(Date.now() - 86_400_000) * 1_000_000n,
    entropy: randomBytes(64),
    vary: 'child-7',
  });
  assert.equal(r.clockSet, false);
  assert.ok(
    Math.abs(Date.now() - Number((await fx.client.exec({ args: ['date', '+%s'] })).stdout) * 1000) < 5000,
  );
  const after = await fx.client.exec({ shell: 'echo "[$FORKD_VARY]"' });
  assert.equal(after.stdout.toString(), '[child-7]\n');
});

void test('many concurrent requests each get their own answer', async () => {
  const paths = Array.from({ length: 40 }, (_, i) => join(fx.dir, `c${i}`));
  await Promise.all(paths.map((p, i) => fx.client.writeFile(p, `v${i}`)));
  const got = await Promise.all(paths.map((p) => fx.client.readFile(p)));
  assert.deepEqual(
    got.map((b) => b.toString()),
    paths.map((_, i) => `v${i}`),
  );
});
