// The QMP client against a scripted peer speaking QMP's wire format: ids
// match replies, events reach waiters, errors are typed, closing rejects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QmpClient } from '../../src/vmm/qmp.js';
import { QmpError, TimeoutError } from '../../src/errors.js';

type Handler = (
  msg: { execute: string; id: number; arguments?: unknown },
  reply: (obj: unknown) => void,
) => void;

async function withPeer(
  handler: Handler,
  fn: (path: string, sockets: net.Socket[]) => Promise<void>,
): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-qmp-'));
  const path = join(dir, 'qmp.sock');
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    const reply = (obj: unknown) => socket.write(JSON.stringify(obj) + '\r\n');
    reply({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 0 } }, capabilities: [] } });
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const msg = JSON.parse(line) as { execute: string; id: number };
        if (msg.execute === 'qmp_capabilities') reply({ return: {}, id: msg.id });
        else handler(msg, reply);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    await fn(path, sockets);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  }
}

test('replies are matched to commands by id, even out of order', () =>
  withPeer(
    (() => {
      const held: (() => void)[] = [];
      return (msg, reply) => {
        const answer = () => reply({ return: { echo: msg.execute }, id: msg.id });
        if (msg.execute === 'slow') held.push(answer);
        else {
          answer();
          held.splice(0).forEach((f) => f());
        }
      };
    })(),
    async (path) => {
      const qmp = await QmpClient.connect(path);
      const slow = qmp.execute<{ echo: string }>('slow');
      const fast = qmp.execute<{ echo: string }>('fast');
      assert.deepEqual(await Promise.all([slow, fast]), [{ echo: 'slow' }, { echo: 'fast' }]);
      qmp.close();
    },
  ));

test('an error reply is a QmpError carrying the command and QEMU’s class', () =>
  withPeer(
    (msg, reply) => reply({ error: { class: 'GenericError', desc: 'no such thing' }, id: msg.id }),
    async (path) => {
      const qmp = await QmpClient.connect(path);
      await assert.rejects(qmp.execute('cont'), (err: QmpError) => {
        assert.ok(err instanceof QmpError);
        assert.equal(err.command, 'cont');
        assert.equal(err.qmpClass, 'GenericError');
        assert.match(err.message, /no such thing/);
        return true;
      });
      qmp.close();
    },
  ));

test('events reach waiters; a waiter times out with a TimeoutError', () =>
  withPeer(
    (msg, reply) => {
      reply({ return: {}, id: msg.id });
      reply({ event: 'MIGRATION', data: { status: 'active' } });
      reply({ event: 'MIGRATION', data: { status: 'completed' } });
    },
    async (path) => {
      const qmp = await QmpClient.connect(path);
      const done = qmp.waitForEvent('MIGRATION', (e) => e.data?.status === 'completed', { timeoutMs: 5000 });
      await qmp.execute('migrate');
      assert.equal((await done).data?.status, 'completed');
      await assert.rejects(qmp.waitForEvent('NEVER', undefined, { timeoutMs: 50 }), TimeoutError);
      qmp.close();
    },
  ));

test('the peer going away rejects every pending command', () =>
  withPeer(
    () => undefined, // never answers
    async (path, sockets) => {
      const qmp = await QmpClient.connect(path);
      const pending = [qmp.execute('a'), qmp.execute('b')];
      sockets[0]!.destroy();
      for (const p of pending) await assert.rejects(p, /connection closed/);
      await assert.rejects(qmp.execute('c'), QmpError);
    },
  ));

test('connect retries until the socket exists, then gives up with a TimeoutError', async () => {
  await assert.rejects(QmpClient.connect('/nonexistent/forkd/qmp.sock', { timeoutMs: 100 }), TimeoutError);
});
