// Whether QEMU itself has taken a host's connection to the agent's chardev.
// A client's connect() completes in the kernel's listen backlog; QEMU only
// marks the virtio port "host connected" when its main loop accepts. A
// restored guest must not run before that, or it is told the host left and
// came back, and those events race the host's first request (see
// guest/agent/chan.c).
import { QmpError } from '../errors.js';
import type { Socket } from 'node:net';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { connectUnix } from '../util/unix-socket.js';
import { AGENT_CHARDEV } from './machine.js';
import type { QmpClient } from './qmp.js';

interface ChardevInfo {
  label: string;
  filename: string;
}

/** Resolves once QEMU reports the agent chardev connected (its filename loses the `disconnected:` prefix). */
export async function waitAgentAttached(qmp: QmpClient, opts: CallOptions = {}): Promise<void> {
  const signal = deadlineSignal(
    { ...opts, timeoutMs: opts.timeoutMs ?? 10_000 },
    'waiting for QEMU to accept the agent connection',
  );
  for (let delay = 1; ; delay = Math.min(delay * 2, 20)) {
    const chardevs = await qmp.execute<ChardevInfo[]>('query-chardev', undefined, { signal });
    const agent = chardevs.find((c) => c.label === AGENT_CHARDEV);
    if (!agent) throw new QmpError(`QEMU has no chardev named ${AGENT_CHARDEV}`, 'query-chardev', undefined);
    if (!agent.filename.startsWith('disconnected:')) return;
    await sleep(delay, signal);
  }
}

/**
 * Attach a host to the agent port of a VM that never runs guest code (a
 * writer), and wait until QEMU has taken it: device state saved from that VM
 * then says "host connected", as the source's did. Nothing is read or
 * written; destroy the socket when done.
 */
export async function holdAgentPort(
  qmp: QmpClient,
  socketPath: string,
  opts: CallOptions = {},
): Promise<Socket> {
  const signal = deadlineSignal(
    { ...opts, timeoutMs: opts.timeoutMs ?? 10_000 },
    "attaching to the writer's agent port",
  );
  const socket = await connectUnix(socketPath, signal);
  socket.on('error', () => undefined);
  socket.resume(); // whatever arrives is dropped
  try {
    await waitAgentAttached(qmp, { signal });
    return socket;
  } catch (err) {
    socket.destroy();
    throw err;
  }
}
