// The best-of-k demo end to end with 2 seeds (the README's run uses 20):
// a real daemon, a python-numpy sandbox with the seeded-bug project and its
// setup, forks of 5 scored by the scripted agent. It pins what the demo's
// table rests on, and that the demo leaves no sandbox running.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { runDemo } from '../../examples/best-of-k/run.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-best-of-k';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-demo-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
});

after(async () => {
  try {
    await daemon?.close();
    assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  } finally {
    await engine?.store.remove(TAG);
    await rm(scratch, { recursive: true, force: true });
  }
});

test('the demo forks at the decision point, scores 5 branches per seed, keeps the best and prints its table', async () => {
  const report = await runDemo({ url: daemon.url, seeds: 2, snapshot: TAG, redo: 2, log: () => undefined });
  assert.equal(report.seeds.length, 2);
  for (const s of report.seeds) {
    assert.ok(s.single !== null && s.best !== null, `seed ${s.seed} has scores`);
    // Scores are tests passed (0..12) minus edits (0..6); the best is one of the five, the single among them.
    assert.ok(s.best >= s.single, `seed ${s.seed}: best ${s.best} < single ${s.single}`);
    assert.ok(s.best <= 8 && s.single >= -6);
  }
  assert.ok(report.setupMs > 0 && report.setupFiveMs > 0);
  assert.match(report.table, /^\| seed \| single branch \(T = 1\.0\) \| best of 5 \|/);
  assert.match(report.table, /best of 5 beat the single branch in \d of 2/);
  const left = (await (await fetch(`${daemon.url}/v1/sandboxes`)).json()) as unknown[];
  assert.deepEqual(left, [], 'the demo killed every sandbox it made');
});
