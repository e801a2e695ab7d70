// waitAgentAttached against a real QEMU: it waits while nobody is connected to
// the agent chardev and returns once QEMU itself has taken a connection (the
// point after which a restored guest may run without being told the host left).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TimeoutError } from '../../src/errors.js';
import { waitAgentAttached } from '../../src/vmm/chardev.js';
import { AGENT_CHARDEV } from '../../src/vmm/machine.js';
import { QmpClient } from '../../src/vmm/qmp.js';

test('the agent counts as attached only once QEMU has accepted the connection', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-chardev-'));
  const qmpPath = join(dir, 'qmp.sock');
  const agentPath = join(dir, 'agent.sock');
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      '-machine',
      'none',
      '-nodefaults',
      '-display',
      'none',
      '-chardev',
      `socket,id=qmp,path=${qmpPath},server=on,wait=off`,
      '-mon',
      'chardev=qmp,mode=control',
      '-chardev',
      `socket,id=${AGENT_CHARDEV},path=${agentPath},server=on,wait=off`,
    ],
    { stdio: 'ignore' },
  );
  let agent: net.Socket | undefined;
  try {
    const qmp = await QmpClient.connect(qmpPath, { timeoutMs: 10_000 });
    await assert.rejects(waitAgentAttached(qmp, { timeoutMs: 300 }), TimeoutError);
    agent = net.createConnection(agentPath);
    await new Promise((resolve) => agent!.once('connect', resolve));
    await waitAgentAttached(qmp, { timeoutMs: 5_000 });
    qmp.close();
  } finally {
    agent?.destroy();
    qemu.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
