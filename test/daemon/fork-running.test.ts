// POST /v1/sandboxes/:id/fork over real HTTP with real python-numpy VMs: a
// running sandbox forked k ways, each child handed its variant (environment,
// /run/forkd/vary.json, runtime variables) with the source's state and its
// own random numbers; the source going on untouched; the intermediate
// snapshot removed or kept; and bad input refused with nothing left behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { Sandbox } from '../../src/sdk/index.js';
import { runCliAsync } from '../support/cli.js';
import type { Engine } from '../../src/engine/index.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-fork-running';
let engine: Engine;
let daemon: RunningDaemon;
let scratch: string;
let sourceId: string;

interface Child {
  id: string;
  variant: Record<string, unknown>;
  snapshot_tag: string;
  score?: number | null;
  score_error?: string | null;
  kept?: boolean;
}
interface ForkAnswer {
  source_id: string;
  snapshot_tag: string;
  snapshot_kept: boolean;
  pause_ms: number;
  children: Child[];
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: unknown }> {
  const res = await fetch(daemon.url + path, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function evalIn(id: string, code: string): Promise<unknown> {
  const r = await api('POST', `/v1/sandboxes/${id}/eval`, { code });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const body = r.body as { error: string | null; value: unknown };
  assert.equal(body.error, null, body.error ?? '');
  return body.value;
}

async function execIn(id: string, script: string): Promise<string> {
  const r = await api('POST', `/v1/sandboxes/${id}/exec`, { args: ['sh', '-c', script] });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const body = r.body as { exit_code: number; stdout: string; stderr: string };
  assert.equal(body.exit_code, 0, body.stderr);
  return body.stdout;
}

async function snapshotTags(): Promise<string[]> {
  return ((await api('GET', '/v1/snapshots')).body as Array<{ tag: string }>).map((s) => s.tag);
}

async function sandboxIds(): Promise<string[]> {
  return ((await api('GET', '/v1/sandboxes')).body as Array<{ id: string }>).map((s) => s.id).sort();
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-fork-running-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  const created = await api('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  assert.equal(created.status, 201);
  sourceId = (created.body as Array<{ id: string }>)[0]!.id;
  // State the source builds after its restore: the children must start from it.
  await evalIn(sourceId, 'progress = 41');
  await execIn(sourceId, 'echo built > /root/setup-done');
});

after(async () => {
  try {
    if (sourceId) await api('DELETE', `/v1/sandboxes/${sourceId}`);
    await daemon?.close();
    assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  } finally {
    await engine?.store.remove(TAG);
    await rm(scratch, { recursive: true, force: true });
  }
});

test('fork k=3 hands each child its variant as env, vary.json and runtime variables, from the source’s state, with its own randomness', async () => {
  const before = await snapshotTags();
  const r = await api('POST', `/v1/sandboxes/${sourceId}/fork`, {
    k: 3,
    vary: { temperature: [0.2, 0.7, 1.3], prompt: ['a', 'b', 'c'], SEED: [1, 2, 3] },
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const answer = r.body as ForkAnswer;
  assert.equal(answer.source_id, sourceId);
  assert.equal(answer.snapshot_kept, false);
  assert.ok(answer.pause_ms >= 0);
  assert.deepEqual(
    answer.children.map((c) => c.variant),
    [
      { temperature: 0.2, prompt: 'a', SEED: 1 },
      { temperature: 0.7, prompt: 'b', SEED: 2 },
      { temperature: 1.3, prompt: 'c', SEED: 3 },
    ],
  );
  assert.deepEqual(await snapshotTags(), before, 'the intermediate snapshot was removed');
  try {
    const seen = await Promise.all(
      answer.children.map(async (c) => ({
        runtime: await evalIn(
          c.id,
          'import random\n[progress + 1, temperature, prompt, SEED, vary, random.random(), numpy.random.rand()]',
        ),
        shell: await execIn(
          c.id,
          'echo "$temperature $prompt $SEED"; cat /root/setup-done /run/forkd/vary.json',
        ),
      })),
    );
    seen.forEach(({ runtime, shell }, i) => {
      const variant = answer.children[i]!.variant;
      const [progress, temperature, prompt, seed, vary] = runtime as unknown[];
      assert.equal(progress, 42, 'the child starts from the source’s state');
      assert.deepEqual([temperature, prompt, seed], [variant.temperature, variant.prompt, variant.SEED]);
      assert.deepEqual(vary, variant);
      const [envLine, setup, json] = shell.split('\n');
      assert.equal(
        envLine,
        `${String(variant.temperature)} ${String(variant.prompt)} ${String(variant.SEED)}`,
      );
      assert.equal(setup, 'built');
      assert.deepEqual(JSON.parse(json ?? ''), variant);
    });
    for (const column of [5, 6]) {
      const draws = new Set(seen.map((s) => (s.runtime as unknown[])[column]));
      assert.equal(draws.size, 3, `random draws (column ${column}) differ between the children`);
    }
    // The intermediate snapshot is gone, so its children cannot be branched: a 409 that says why.
    const again = await api('POST', `/v1/sandboxes/${answer.children[0]!.id}/fork`, { k: 1 });
    assert.equal(again.status, 409, JSON.stringify(again.body));
    assert.match((again.body as { error: string }).error, /was removed.*keep_snapshot: true/);
    // The source goes on where it was, with no variant.
    assert.deepEqual(await evalIn(sourceId, "[progress, 'temperature' in globals()]"), [41, false]);
    assert.equal(await execIn(sourceId, 'echo "${temperature-unset}"'), 'unset\n');
  } finally {
    await Promise.all(answer.children.map((c) => api('DELETE', `/v1/sandboxes/${c.id}`)));
  }
});

test('vary as a list of objects, and keep_snapshot keeps the intermediate snapshot under the given tag', async () => {
  const tag = 'test-fork-running-kept';
  const r = await api('POST', `/v1/sandboxes/${sourceId}/fork`, {
    k: 2,
    vary: [
      { policy: 'greedy', numpy: 'shadow' },
      { policy: 'explore', depth: 3 },
    ],
    tag,
    keep_snapshot: true,
  });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  const answer = r.body as ForkAnswer;
  try {
    assert.equal(answer.snapshot_tag, tag);
    assert.ok((await snapshotTags()).includes(tag));
    assert.deepEqual(await evalIn(answer.children[1]!.id, '[policy, depth]'), ['explore', 3]);
    // A child of a kept fork forks again, and its own child has the newer variant.
    const nested = await api('POST', `/v1/sandboxes/${answer.children[1]!.id}/fork`, {
      k: 1,
      vary: { depth: [4] },
    });
    assert.equal(nested.status, 201, JSON.stringify(nested.body));
    const grandchild = (nested.body as ForkAnswer).children[0]!;
    assert.deepEqual(await evalIn(grandchild.id, '[policy, depth, vary]'), ['explore', 4, { depth: 4 }]);
    await api('DELETE', `/v1/sandboxes/${grandchild.id}`);
    // A name the runtime already has keeps its meaning; the variant is still in `vary`.
    assert.deepEqual(await evalIn(answer.children[0]!.id, "[numpy.__name__, vary['numpy'], policy]"), [
      'numpy',
      'shadow',
      'greedy',
    ]);
  } finally {
    await Promise.all(answer.children.map((c) => api('DELETE', `/v1/sandboxes/${c.id}`)));
    await api('DELETE', `/v1/snapshots/${tag}`);
  }
});

test('best of k: every child is scored at once, the answer is ranked, and only the best `keep` stay running', async () => {
  const byEval = await api('POST', `/v1/sandboxes/${sourceId}/fork`, {
    k: 3,
    vary: { SEED: [3, 9, 5] },
    score: { eval: 'SEED * 2 + progress - 41' },
  });
  assert.equal(byEval.status, 201, JSON.stringify(byEval.body));
  const ranked = (byEval.body as ForkAnswer).children;
  assert.deepEqual(
    ranked.map((c) => [c.variant.SEED, c.score, c.kept]),
    [
      [9, 18, true],
      [5, 10, false],
      [3, 6, false],
    ],
  );
  assert.equal((await api('GET', `/v1/sandboxes/${ranked[1]!.id}`)).status, 404, 'the others were killed');
  assert.equal((await api('GET', `/v1/sandboxes/${ranked[0]!.id}`)).status, 200);
  await api('DELETE', `/v1/sandboxes/${ranked[0]!.id}`);

  // By exec: the last line of stdout; a child that prints no number ranks last, with the reason.
  const byExec = await api('POST', `/v1/sandboxes/${sourceId}/fork`, {
    k: 3,
    vary: { SEED: ['7', 'x', '2'] },
    score: { exec: ['sh', '-c', 'echo scoring; echo "$SEED"'], timeout_secs: 60 },
    keep: 2,
  });
  assert.equal(byExec.status, 201, JSON.stringify(byExec.body));
  const execRanked = (byExec.body as ForkAnswer).children;
  try {
    assert.deepEqual(
      execRanked.map((c) => [c.variant.SEED, c.score, c.kept]),
      [
        ['7', 7, true],
        ['2', 2, true],
        ['x', null, false],
      ],
    );
    assert.match(execRanked[2]!.score_error ?? '', /not a number/);
  } finally {
    await Promise.all(execRanked.slice(0, 2).map((c) => api('DELETE', `/v1/sandboxes/${c.id}`)));
  }
});

test('the TypeScript SDK forks with variants and picks the best of k', async () => {
  const source = await Sandbox.connect(sourceId, { url: daemon.url });
  const children = await source.fork({ k: 2, vary: [{ SEED: 1 }, { SEED: 2 }] });
  try {
    assert.deepEqual(await Promise.all(children.map((c) => c.eval('SEED'))), [1, 2]);
    assert.deepEqual(
      children.map((c) => c.variant),
      [{ SEED: 1 }, { SEED: 2 }],
    );
  } finally {
    await Promise.all(children.map((c) => c.kill()));
  }
  const ranked = await source.bestOf({ k: 2, vary: { SEED: [4, 8] }, score: { eval: 'SEED' } });
  assert.deepEqual(
    ranked.map((c) => [c.score, c.kept]),
    [
      [8, true],
      [4, false],
    ],
  );
  assert.equal(await ranked[0]!.eval('SEED'), 8);
  await ranked[0]!.kill();
});

test('a depth-3 chain of forks shows in GET /v1/tree and in `forkd tree`, sandboxes under their snapshots', async () => {
  const tags = ['test-tree-d1', 'test-tree-d2', 'test-tree-d3'];
  const made: string[] = [];
  try {
    let from = sourceId;
    for (const tag of tags) {
      const r = await api('POST', `/v1/sandboxes/${from}/fork`, { k: 1, tag, keep_snapshot: true });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      from = (r.body as ForkAnswer).children[0]!.id;
      made.push(from);
    }
    const tree = (await api('GET', '/v1/tree')).body as {
      snapshots: Array<{ tag: string; parent: string | null; depth: number; sandboxes: string[] }>;
    };
    const node = (tag: string) => tree.snapshots.find((n) => n.tag === tag);
    assert.deepEqual(node(TAG)?.sandboxes.includes(sourceId), true);
    assert.deepEqual(
      tags.map((t) => [node(t)?.parent, node(t)?.depth, node(t)?.sandboxes]),
      [
        [TAG, (node(TAG)?.depth ?? 0) + 1, [made[0]]],
        [tags[0], (node(TAG)?.depth ?? 0) + 2, [made[1]]],
        [tags[1], (node(TAG)?.depth ?? 0) + 3, [made[2]]],
      ],
    );
    const cli = await runCliAsync(['tree', '--url', daemon.url]);
    assert.equal(cli.status, 0, cli.stderr);
    const lines = cli.stdout.split('\n');
    const at = (text: string) => lines.findIndex((l) => l.includes(text));
    for (const [i, tag] of tags.entries()) {
      assert.ok(at(tag) > at(i === 0 ? TAG : tags[i - 1]!), `${tag} is printed under its parent`);
      assert.ok(at(`● ${made[i]!} (running)`) > at(tag), `${made[i]} is printed under ${tag}`);
    }
    assert.match(
      lines[at('test-tree-d3')] ?? '',
      /^ *[└├]─ test-tree-d3 {2}\(\d+(\.\d)? (MiB|GiB|KiB), branched from sb-/,
    );
  } finally {
    await Promise.all(made.map((id) => api('DELETE', `/v1/sandboxes/${id}`)));
    for (const tag of [...tags].reverse()) await api('DELETE', `/v1/snapshots/${tag}`);
  }
});

test('bad forks are 400/404 with a one-line error, and leave no sandbox or snapshot behind', async () => {
  const snapshots = await snapshotTags();
  const sandboxes = await sandboxIds();
  const cases: Array<[string, unknown, number, RegExp]> = [
    [sourceId, { k: 0 }, 400, /k must be an integer from 1 to 100, got 0/],
    [sourceId, { k: 101 }, 400, /k must be an integer from 1 to 100, got 101/],
    [sourceId, { k: 2, vary: { t: [1, 2, 3] } }, 400, /vary\.t has 3 values for k = 2 children/],
    [sourceId, { k: 2, vary: [{ t: 1 }] }, 400, /vary has 1 variants for k = 2 children/],
    [sourceId, { k: 1, vary: { 'bad-name': [1] } }, 400, /not usable as an environment variable/],
    [sourceId, { k: 1, vary: { FORKD_X: [1] } }, 400, /FORKD_ prefix/],
    [sourceId, { k: 1, vary: 'temperature' }, 400, /vary must be/],
    [sourceId, { k: 1, tag: 'no/slashes' }, 400, /tag/],
    [sourceId, { k: 2, keep: 1 }, 400, /keep needs score/],
    [
      sourceId,
      { k: 2, score: { eval: '1' }, keep: 3 },
      400,
      /keep must be an integer from 1 to k \(2\), got 3/,
    ],
    [sourceId, { k: 2, score: { exec: [] } }, 400, /score\.exec must not be empty/],
    [sourceId, { k: 2, score: { eval: '1', timeout_secs: 0 } }, 400, /score\.timeout_secs must be from 1/],
    ['sb-nosuch', { k: 1 }, 404, /sandbox "sb-nosuch" not found/],
  ];
  for (const [id, body, status, message] of cases) {
    const r = await api('POST', `/v1/sandboxes/${id}/fork`, body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`);
    const error = (r.body as { error: string }).error;
    assert.match(error, message);
    assert.doesNotMatch(error, /\n/);
  }
  assert.deepEqual(await snapshotTags(), snapshots);
  assert.deepEqual(await sandboxIds(), sandboxes);
});

test('forking a sandbox that was killed is a 404', async () => {
  const created = await api('POST', '/v1/sandboxes', { snapshot_tag: TAG });
  const id = (created.body as Array<{ id: string }>)[0]!.id;
  assert.equal((await api('DELETE', `/v1/sandboxes/${id}`)).status, 204);
  const r = await api('POST', `/v1/sandboxes/${id}/fork`, { k: 1 });
  assert.equal(r.status, 404);
});
