// The channel: reconnecting hosts (what a snapshot restore looks like to the
// agent), pending calls when the socket closes, and malformed input.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { AgentClient } from '../../../src/engine/agent/client.js';
import {
  decodeResponsePayload,
  encodeFrame,
  encodeRequest,
  FrameDecoder,
  RequestType,
  ResponseType,
  type Frame,
} from '../../../src/engine/agent/protocol.js';
import { AgentError } from '../../../src/errors.js';
import { startAgent, type AgentFixture } from './agent-harness.js';

let fx: AgentFixture;
before(async () => {
  fx = await startAgent();
});
after(async () => {
  await fx.stop();
});

/** A raw connection for sending bytes the client would never send. */
async function raw(): Promise<{ sock: net.Socket; next(): Promise<Frame | 'closed'> }> {
  const sock = net.createConnection({ path: fx.socketPath });
  await new Promise((r) => sock.once('connect', r));
  const dec = new FrameDecoder();
  const queue: Array<Frame | 'closed'> = [];
  let wake: (() => void) | undefined;
  sock.on('data', (c: Buffer) => {
    queue.push(...dec.push(c));
    wake?.();
  });
  sock.on('close', () => {
    queue.push('closed');
    wake?.();
  });
  return {
    sock,
    async next() {
      while (!queue.length) await new Promise<void>((r) => (wake = r));
      return queue.shift()!;
    },
  };
}

void test('a new host connection is served after the old one goes away; state survives', async () => {
  await fx.client.hygiene({ timeUnixNs: 0n, entropy: Buffer.alloc(0), vary: 'kept' });
  const pid = (await fx.client.ping()).pid;
  await fx.client.close();
  assert.equal(fx.client.closed, true);
  await assert.rejects(fx.client.ping(), AgentError);
  fx.client = await AgentClient.connect(fx.socketPath, { timeoutMs: 5000 });
  assert.equal((await fx.client.ping()).pid, pid);
  const r = await fx.client.exec({ shell: 'echo $FORKD_VARY' });
  assert.equal(r.stdout.toString(), 'kept\n');
});

void test('closing the channel rejects pending calls and fires onClose', async () => {
  const closed = new Promise<Error | undefined>((r) => fx.client.onClose(r));
  const pending = fx.client.exec({ args: ['sleep', '0.5'] });
  const ping = fx.client.ping();
  await ping;
  const closing = fx.client.close();
  await assert.rejects(
    pending,
    (err: unknown) => err instanceof AgentError && err.message === 'agent channel closed',
  );
  await closing;
  assert.equal(await closed, undefined);
  fx.client = await AgentClient.connect(fx.socketPath, { timeoutMs: 5000 });
  assert.equal((await fx.client.ping()).version, 2);
});

void test('partial frames at disconnect are discarded', async () => {
  await fx.client.close();
  const r = await raw();
  const frame = encodeRequest(9, RequestType.PING);
  r.sock.write(frame.subarray(0, 6));
  r.sock.end();
  assert.equal(await r.next(), 'closed');
  fx.client = await AgentClient.connect(fx.socketPath, { timeoutMs: 5000 });
  assert.equal((await fx.client.ping()).version, 2);
});

void test('malformed TLV gets an ERROR with the frame id and the channel stays usable', async () => {
  await fx.client.close();
  const r = await raw();
  const badTlv = Buffer.from([8, 100, 0, 0, 0, 0x2f]); // PATH claiming 100 bytes
  r.sock.write(encodeFrame(41, RequestType.FILE_STAT, badTlv));
  r.sock.write(encodeFrame(42, 99, Buffer.alloc(0)));
  r.sock.write(encodeFrame(43, RequestType.PING, Buffer.alloc(0)));
  const got = new Map<number, Frame>();
  for (let i = 0; i < 3; i++) {
    const f = await r.next();
    assert.notEqual(f, 'closed');
    got.set((f as Frame).id, f as Frame);
  }
  const e41 = got.get(41)!;
  assert.equal(e41.type, ResponseType.ERROR);
  assert.equal(decodeResponsePayload(e41.payload).head.errno, 22);
  assert.equal(got.get(42)!.type, ResponseType.ERROR);
  assert.equal(got.get(43)!.type, ResponseType.OK);
  r.sock.destroy();
  fx.client = await AgentClient.connect(fx.socketPath, { timeoutMs: 5000 });
});

void test('an oversized frame gets an ERROR with its id, then the connection is dropped', async () => {
  await fx.client.close();
  const r = await raw();
  const head = Buffer.alloc(9);
  head.writeUInt32LE(64 * 1024 * 1024, 0);
  head.writeUInt32LE(77, 4);
  head.writeUInt8(RequestType.PING, 8);
  r.sock.write(head);
  const f = await r.next();
  assert.notEqual(f, 'closed');
  assert.equal((f as Frame).id, 77);
  assert.equal((f as Frame).type, ResponseType.ERROR);
  assert.equal(decodeResponsePayload((f as Frame).payload).head.errno, 90); // EMSGSIZE
  assert.equal(await r.next(), 'closed');
  fx.client = await AgentClient.connect(fx.socketPath, { timeoutMs: 5000 });
  assert.equal((await fx.client.ping()).version, 2);
});

void test('connect retries until the socket appears, and gives up with an AgentError', async () => {
  await assert.rejects(
    AgentClient.connect(`${fx.dir}/missing.sock`, { retryUntilMs: 100 }),
    (err: unknown) => err instanceof AgentError && /cannot connect/.test(err.message),
  );
  const started = Date.now();
  await assert.rejects(
    AgentClient.connect(`${fx.dir}/missing.sock`, { retryUntilMs: 10_000, timeoutMs: 150 }),
    {
      name: 'TimeoutError',
    },
  );
  assert.ok(Date.now() - started < 2000);
});
