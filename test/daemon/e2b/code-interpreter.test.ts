// The official code interpreter SDK (`@e2b/code-interpreter` from npm,
// unchanged) against a real daemon and real python-numpy guests: runCode
// keeping state across calls with numpy warm, stdout and stderr, results
// (text, json), an error with its traceback, env vars for one call, a second
// context isolated from the default one (then listed, restarted, removed),
// an E2B fork that keeps both contexts, a longer execution answered as a
// stream (keepalives first, each printed line as it is printed) and one the client gives up on, and the refusals
// (another language, an unknown context, the default context's restart).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { NotFoundError, Sandbox, SandboxError, TimeoutError } from '@e2b/code-interpreter';
import type { Engine } from '../../../src/engine/index.js';
import { runDirEntries, testEngine } from '../../support/engine.js';
import { startE2bDaemon, type E2bTestDaemon } from '../../support/e2b-daemon.js';

/** The code interpreter SDK's default template, as a snapshot tag of its own (made from python-numpy here). */
const TAG = 'code-interpreter-v1';
let engine: Engine;
let e2b: E2bTestDaemon;
const opts = (extra: Record<string, unknown> = {}) => e2b.opts(extra);

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', replace: true });
  e2b = await startE2bDaemon('e2b-code-interpreter');
});

after(async () => {
  for (const s of await Sandbox.list(opts()).nextItems()) await Sandbox.kill(s.sandboxId, opts());
  await e2b.close();
  await engine.store.remove(TAG).catch(() => undefined);
  assert.deepEqual(runDirEntries(engine), []);
});

test('runCode: state across calls, output, results, errors, env vars', async () => {
  const sbx = await Sandbox.create(TAG, opts({ envs: { FROM_CREATE: 'yes' } }));
  try {
    // numpy is warm: the import costs nothing, and state persists.
    const first = await sbx.runCode('import numpy as np\nx = np.arange(5)\nx.sum()', { timeoutMs: 120_000 });
    assert.equal(first.error, undefined, JSON.stringify(first.error));
    assert.equal(first.text, '10');
    assert.equal(first.results.length, 1);
    assert.equal(first.results[0]!.isMainResult, true);
    const second = await sbx.runCode('int(x.sum() + 1)');
    assert.equal(second.text, '11');
    assert.ok((second.executionCount ?? 0) > (first.executionCount ?? 0), 'the count goes up');

    const chunks: string[] = [];
    const printed = await sbx.runCode(
      'import sys\nprint("hello")\nprint("oops", file=sys.stderr)\nprint("again")',
      {
        onStdout: (m) => void chunks.push(m.line),
      },
    );
    assert.deepEqual(printed.logs.stdout, ['hello\n', 'again\n']);
    assert.deepEqual(printed.logs.stderr, ['oops\n']);
    assert.deepEqual(chunks, ['hello\n', 'again\n'], 'the callback saw each line');
    assert.equal(printed.results.length, 0, 'a cell ending in a call returning None has no result');

    // A string shows without quotes; a dict also comes as json; a cwd under the E2B home.
    assert.equal((await sbx.runCode('"plain"')).text, 'plain');
    const dict = await sbx.runCode('{"a": [1, 2], "b": None}');
    assert.deepEqual(dict.results[0]!.json, { a: [1, 2], b: null });
    assert.equal((await sbx.runCode('import os\nos.getcwd()')).text, '/home/user');

    const failed = await sbx.runCode('def f():\n    return 1 / 0\n\nf()');
    assert.ok(failed.error, 'the error is reported');
    assert.equal(failed.error.name, 'ZeroDivisionError');
    assert.equal(failed.error.value, 'division by zero');
    assert.match(failed.error.traceback, /line 2, in f\n\s+return 1 \/ 0/);
    assert.doesNotMatch(failed.error.traceback, /forkd-e2b/, "the helper's frames are not the user's");
    const syntax = await sbx.runCode('x =');
    assert.equal(syntax.error?.name, 'SyntaxError');

    const env = await sbx.runCode('os.environ.get("ONE_CALL"), os.environ.get("FROM_CREATE")', {
      envs: { ONE_CALL: 'only now' },
    });
    assert.equal(env.text, "('only now', 'yes')");
    assert.equal((await sbx.runCode('os.environ.get("ONE_CALL")')).results.length, 0, 'gone after its call');
  } finally {
    await sbx.kill();
  }
});

test('contexts: isolated from the default one, listed, restarted, removed; a fork keeps them', async () => {
  const sbx = await Sandbox.create(TAG, opts());
  try {
    await sbx.runCode('x = "default"');
    const ctx = await sbx.createCodeContext({ cwd: '/tmp' });
    assert.equal(ctx.language, 'python');
    assert.equal(ctx.cwd, '/tmp');
    const unseen = await sbx.runCode('x', { context: ctx });
    assert.equal(unseen.error?.name, 'NameError', 'the default context is not visible');
    await sbx.runCode('x = "mine"', { context: ctx });
    assert.equal((await sbx.runCode('x', { context: ctx })).text, 'mine');
    assert.equal((await sbx.runCode('x')).text, 'default', 'nor is the new one from the default');
    assert.equal((await sbx.runCode('import os\nos.getcwd()', { context: ctx })).text, '/tmp');

    const listed = await sbx.listCodeContexts();
    assert.deepEqual(listed.map((c) => c.id).sort(), ['default', ctx.id].sort());

    // A fork's runtime is a copy: both contexts come along.
    const [child] = await sbx.fork({ count: 1 });
    assert.ok(child instanceof Sandbox, child instanceof Error ? child.message : 'no fork');
    try {
      assert.equal((await child.runCode('x')).text, 'default');
      assert.equal((await child.runCode('x', { context: ctx })).text, 'mine');
      await child.runCode('x = "child"', { context: ctx });
    } finally {
      await child.kill();
    }
    assert.equal(
      (await sbx.runCode('x', { context: ctx })).text,
      'mine',
      "the child's writes stay in the child",
    );

    await sbx.restartCodeContext(ctx);
    assert.equal((await sbx.runCode('x', { context: ctx })).error?.name, 'NameError', 'a restart clears it');
    await sbx.removeCodeContext(ctx);
    await assert.rejects(sbx.runCode('1', { context: ctx }), NotFoundError);
    await assert.rejects(sbx.removeCodeContext(ctx), NotFoundError);
    assert.deepEqual(
      (await sbx.listCodeContexts()).map((c) => c.id),
      ['default'],
    );

    // What forkd does not do is refused, not faked.
    await assert.rejects(sbx.runCode('1', { language: 'javascript' }), (err: unknown) => {
      assert.ok(err instanceof SandboxError, String(err));
      assert.match(err.message, /400/);
      return true;
    });
    await assert.rejects(sbx.restartCodeContext('default'), SandboxError);
  } finally {
    await sbx.kill();
  }
});

test('a longer execution streams; one the client gives up on delays only the next call', async () => {
  const sbx = await Sandbox.create(TAG, opts());
  try {
    // Past the 2 s commit point and a 5 s keepalive: the SDK skips those lines.
    const slow = await sbx.runCode('import time\ntime.sleep(6)\nprint("slept")\n"late"', {
      timeoutMs: 120_000,
    });
    assert.equal(slow.error, undefined, JSON.stringify(slow.error));
    assert.equal(slow.text, 'late');
    assert.deepEqual(slow.logs.stdout, ['slept\n']);

    // Output comes as the cell prints it, not when it ends: each line long before the last.
    const arrivals: Array<{ line: string; at: number }> = [];
    const started = Date.now();
    const ticking = await sbx.runCode(
      'import sys\nfor i in range(4):\n    print("tick", i, flush=True)\n    print("err", i, file=sys.stderr)\n    time.sleep(1.5)\n"ticked"',
      {
        timeoutMs: 120_000,
        onStdout: (m) => void arrivals.push({ line: m.line, at: Date.now() - started }),
      },
    );
    const total = Date.now() - started;
    assert.equal(ticking.text, 'ticked');
    assert.deepEqual(ticking.logs.stdout, ['tick 0\n', 'tick 1\n', 'tick 2\n', 'tick 3\n']);
    assert.deepEqual(ticking.logs.stderr, ['err 0\n', 'err 1\n', 'err 2\n', 'err 3\n']);
    assert.ok(
      arrivals[0]!.at < total - 3_000,
      `the first line came at ${arrivals[0]!.at} ms of ${total} ms: it was not streamed`,
    );

    await assert.rejects(sbx.runCode('time.sleep(4)\n"abandoned"', { timeoutMs: 1_000 }), TimeoutError);
    const next = await sbx.runCode('"next"');
    assert.equal(next.text, 'next', 'the runtime finished the abandoned code, then ran this');
  } finally {
    await sbx.kill();
  }
});
