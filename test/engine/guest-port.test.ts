// A guest port reached through the agent's relay, against the real agent
// (--listen mode on the host, so "the guest's loopback" is this host's): bytes
// both ways, half-close, a port nobody listens on, a bad port, a reader that
// stops reading holding the server back, and destroy ending the relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { connectGuestPort } from '../../src/engine/guest-port.js';
import { ConflictError, InvalidArgumentError } from '../../src/errors.js';
import { startAgent } from './agent/agent-harness.js';

async function listen(onConnection: (socket: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer(onConnection);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as AddressInfo).port };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

test('bytes reach a guest server and its answer comes back after the client half-closes', async () => {
  const agent = await startAgent();
  const { server, port } = await listen((socket) => {
    const hash = createHash('sha256');
    socket.on('data', (c: Buffer) => hash.update(c));
    socket.on('end', () => socket.end(hash.digest('hex')));
  });
  try {
    const stream = connectGuestPort(agent.client, port, 'the test agent');
    // Several frames' worth: the relay's reads and the channel's writes both split it.
    const upload = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    stream.end(upload);
    const answer = (await readAll(stream)).toString();
    assert.equal(answer, createHash('sha256').update(upload).digest('hex'));
  } finally {
    server.close();
    await agent.stop();
  }
});

test('a port nobody listens on is a ConflictError that says so', async () => {
  const agent = await startAgent();
  const { server, port } = await listen(() => undefined);
  server.close();
  await once(server, 'close');
  try {
    const stream = connectGuestPort(agent.client, port, 'sb-test');
    const [err] = (await once(stream, 'error')) as [Error];
    assert.ok(err instanceof ConflictError);
    assert.match(err.message, new RegExp(`nothing listens on port ${port} in sb-test`));
  } finally {
    await agent.stop();
  }
});

test('a port outside 1..65535 is refused before anything runs', async () => {
  const agent = await startAgent();
  try {
    for (const port of [0, 65536, 1.5, -1]) {
      assert.throws(() => connectGuestPort(agent.client, port, 'sb-test'), InvalidArgumentError);
    }
  } finally {
    await agent.stop();
  }
});

test('a reader that stops reading holds the guest server back instead of buffering its output', async () => {
  const agent = await startAgent();
  const total = 64 * 1024 * 1024;
  let serverSocket: Socket | undefined;
  const { server, port } = await listen((socket) => {
    serverSocket = socket;
    const block = Buffer.alloc(1024 * 1024, 1);
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent += block.length;
        if (!socket.write(block)) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  try {
    const stream = connectGuestPort(agent.client, port, 'the test agent');
    stream.pause();
    // Let the server write as much as flow control allows.
    await new Promise((r) => setTimeout(r, 1500));
    const buffered = stream.readableLength;
    assert.ok(buffered <= 4 * 1024 * 1024, `the host holds ${buffered} bytes for a paused reader`);
    assert.ok(serverSocket && serverSocket.bytesWritten < total / 2, 'the server was not held back');
    const received = (await readAll(stream)).length;
    assert.equal(received, total);
    stream.destroy();
  } finally {
    server.close();
    await agent.stop();
  }
});

test('destroying the stream ends the relay, and the server sees the connection close', async () => {
  const agent = await startAgent();
  let serverSide: ((socket: Socket) => void) | undefined;
  const accepted = new Promise<Socket>((resolve) => (serverSide = resolve));
  const { server, port } = await listen((socket) => {
    socket.write('hello');
    serverSide?.(socket);
  });
  try {
    const stream = connectGuestPort(agent.client, port, 'the test agent');
    const [first] = (await once(stream, 'data')) as [Buffer];
    assert.equal(first.toString(), 'hello');
    const socket = await accepted;
    const closed = once(socket, 'close');
    stream.destroy();
    await closed;
  } finally {
    server.close();
    await agent.stop();
  }
});
