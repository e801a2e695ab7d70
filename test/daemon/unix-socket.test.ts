// The daemon on a unix socket: only its owner can connect (mode 0600), the
// audit log names the socket as the peer, and a socket left by a dead daemon
// is replaced while any other file at the path is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../../src/daemon/server.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { TEST_DATA_DIR } from '../support/engine.js';

function get(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('the daemon listens on a 0600 unix socket and audits the socket as the peer', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-sock-'));
  const socketPath = join(dir, 'forkd.sock');
  // A socket file at the path, as a daemon that died would leave it.
  const leftover = createServer();
  await new Promise<void>((r) => leftover.listen(socketPath, r));
  leftover.unref();
  const daemon = await startDaemon({
    dataDir: TEST_DATA_DIR,
    socketPath,
    auditLog: join(dir, 'audit.jsonl'),
  });
  try {
    assert.equal(daemon.url, `unix:${socketPath}`);
    assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
    const health = await get(socketPath, '/healthz');
    assert.equal(health.status, 200);
    assert.deepEqual(JSON.parse(health.body), { ok: true });
  } finally {
    await daemon.close();
    leftover.close();
  }
  const audit = (await readFile(join(dir, 'audit.jsonl'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { remote: string; path: string });
  assert.deepEqual(
    audit.map((a) => [a.path, a.remote]),
    [['/healthz', `unix:${socketPath}`]],
  );

  const regular = join(dir, 'not-a-socket');
  await writeFile(regular, 'keep me');
  await assert.rejects(startDaemon({ dataDir: TEST_DATA_DIR, socketPath: regular }), InvalidArgumentError);
  assert.equal(await readFile(regular, 'utf8'), 'keep me', 'a file that is not a socket is never removed');
  await rm(dir, { recursive: true, force: true });
});
