// Eight live branches at once, five rounds over (tiny guest). Concurrent
// branches once lost a race with QEMU ("cont: Migration is not finalized
// yet": the MIGRATION completed event comes before the run state leaves
// finish-migrate); every branch of every round must now come out ready, its
// source must keep running, and a child of it must see the branch point.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildResult, Engine, Sandbox } from '../../src/engine/index.js';
import { qemuProcessesUsing, runDirEntries, shOk, testEngine } from '../support/engine.js';

const TAG = 'test-branch-8way';
const WAYS = 8;
const ROUNDS = 5;
let engine: Engine;
const sources: Sandbox[] = [];

const sh = shOk;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 128 });
  const forked = await engine.fork({ tag: TAG, n: WAYS });
  for (const child of forked.children) {
    if (!child.ok) throw child.error;
    sources.push(child.sandbox);
  }
});

after(async () => {
  await Promise.all(sources.map((s) => s.kill()));
  for (const tag of await engine.store.list()) {
    if (tag.tag.startsWith(TAG)) await engine.store.remove(tag.tag).catch(() => undefined);
  }
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

for (let round = 1; round <= ROUNDS; round++) {
  void test(`round ${round}: ${WAYS} concurrent branches all come out ready and their sources run on`, async () => {
    await Promise.all(sources.map((s, i) => sh(s, `echo round${round}-source${i} > /tmp/mark`)));
    const tags = sources.map((_, i) => `${TAG}-r${round}-${i}`);
    const results = await Promise.allSettled(sources.map((s, i) => engine.branch(s, { tag: tags[i]! })));
    const failures = results.flatMap((r, i) =>
      r.status === 'rejected' ? [`${tags[i]}: ${String(r.reason)}`] : [],
    );
    assert.deepEqual(failures, []);
    for (const tag of tags) assert.equal((await engine.store.get(tag)).manifest?.status, 'ready', tag);
    // Every source still runs and goes on from where it was.
    const marks = await Promise.all(sources.map((s) => sh(s, 'cat /tmp/mark')));
    assert.deepEqual(
      marks,
      sources.map((_, i) => `round${round}-source${i}\n`),
    );
    // A child of one branch (a different one each round) starts from its branch point.
    const pick = (round * 3) % WAYS;
    const forked = await engine.fork({ tag: tags[pick]!, n: 1 });
    const child = forked.children[0] as ChildResult;
    if (!child.ok) throw child.error;
    try {
      assert.equal(await sh(child.sandbox, 'cat /tmp/mark'), `round${round}-source${pick}\n`);
    } finally {
      await child.sandbox.kill();
    }
    for (const tag of tags) await engine.store.remove(tag);
  });
}
