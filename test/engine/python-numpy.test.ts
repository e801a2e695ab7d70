// Real VMs from the bootstrapped image: a parent warmed with numpy imported,
// children that eval on it at once, keep their own interpreter state and
// their own disk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon } from '../../src/daemon/server.js';
import { jsonCaller } from '../support/http.js';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-python-numpy';
const warm = warmChildren(TAG, 'python-numpy', 3);

test('the snapshot waited for numpy to be imported', async () => {
  const { manifest } = await warm.engine.store.getReady(TAG);
  assert.deepEqual(manifest.runtime, { kind: 'python', imports: ['numpy'] });
  assert.ok(manifest.disk, 'has a frozen disk layer');
});

test('every child evals numpy at once, warm', async () => {
  const results = await Promise.all(
    warm.children.map((c) => c.sandbox.agent.eval('numpy.zeros(5).tolist()')),
  );
  for (const r of results) {
    assert.equal(r.error, null);
    assert.deepEqual(r.result, [0, 0, 0, 0, 0]);
  }
});

test('interpreter state persists within a child and is private to it', async () => {
  const [a, b] = warm.children;
  assert.ok(a && b);
  await a.sandbox.agent.eval('x = 41');
  assert.equal((await a.sandbox.agent.eval('x + 1')).result, 42);
  const other = await b.sandbox.agent.eval('x');
  assert.equal(other.exitCode, 1);
  assert.match(other.error ?? '', /NameError/);
});

test('children read distinct randomness', async () => {
  const values = await Promise.all(
    warm.children.map((c) => c.sandbox.agent.eval('import os; os.urandom(16).hex()')),
  );
  assert.equal(new Set(values.map((v) => v.result)).size, 3);
});

test('each child writes its own disk overlay', async () => {
  const [a, b] = warm.children;
  assert.ok(a && b);
  const w = await a.sandbox.agent.exec({ shell: 'echo mine > /root/note && sync && cat /root/note' });
  assert.equal(w.stdout.toString(), 'mine\n');
  const r = await b.sandbox.agent.exec({ args: ['cat', '/root/note'] });
  assert.notEqual(r.exitCode, 0);
});

test('the runtime’s own generators (random, numpy) are reseeded in every child', async () => {
  const values = await Promise.all(
    warm.children.map((c) =>
      c.sandbox.agent.eval('import random; (random.random(), float(numpy.random.rand()))'),
    ),
  );
  const pythonDraws = values.map((v) => JSON.stringify((v.result as number[])[0]));
  const numpyDraws = values.map((v) => JSON.stringify((v.result as number[])[1]));
  assert.equal(new Set(pythonDraws).size, 3, pythonDraws.join(' '));
  assert.equal(new Set(numpyDraws).size, 3, numpyDraws.join(' '));
});

test('through the daemon, ping and eval answer as the original does (result is the repr string) and eval adds value as JSON', async () => {
  const scratch = await mkdtemp(join(tmpdir(), 'forkd-eval-shape-'));
  const daemon = await startDaemon({
    dataDir: warm.engine.dataDir.root,
    port: 0,
    auditLog: join(scratch, 'audit.jsonl'),
  });
  try {
    const call = jsonCaller(() => daemon.url);
    const spawned = await call('POST', '/v1/sandboxes', { snapshot_tag: TAG });
    assert.equal(spawned.status, 201, JSON.stringify(spawned.json));
    const id = (spawned.json as { id: string }[])[0]!.id;
    const ping = (await call('POST', `/v1/sandboxes/${id}/ping`)).json as Record<string, unknown>;
    assert.equal(ping.agent_lang, 'python');
    assert.equal(ping.warmup_ready, true);
    assert.match(String(ping.numpy_version), /^\d+\.\d+/, 'the original’s ping names numpy’s version');
    const r = await call('POST', `/v1/sandboxes/${id}/eval`, { code: 'numpy.arange(3).tolist()' });
    assert.deepEqual(r.json, { result: '[0, 1, 2]', value: [0, 1, 2], error: null, exit_code: 0 });
    const statement = await call('POST', `/v1/sandboxes/${id}/eval`, { code: 'y = 1' });
    assert.deepEqual(statement.json, { result: null, value: null, error: null, exit_code: 0 });
    assert.equal((await call('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  } finally {
    await daemon.close();
    await rm(scratch, { recursive: true, force: true });
  }
});
