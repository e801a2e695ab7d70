// Whether QEMU itself has taken a host's connection to the agent's chardev.
// A client's connect() completes in the kernel's listen backlog; QEMU only
// marks the virtio port "host connected" when its main loop accepts. A
// restored guest must not run before that, or it is told the host left and
// came back, and those events race the host's first request (see
// guest/agent/chan.c).
import { QmpError } from '../errors.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
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
