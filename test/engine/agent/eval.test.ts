// EVAL against the real Python runtime (guest/runtime/python_runtime.py),
// started by the agent from a runtime config in a temp dir.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AgentError } from '../../../src/errors.js';
import { processAlive, pythonRuntime, startAgent, until, type AgentFixture } from './agent-harness.js';

async function readyAgent(imports: string[]): Promise<AgentFixture> {
  const fx = await startAgent({
    runtimeConfig: { kind: 'python', argv: ['python3', pythonRuntime], imports },
  });
  await until(async () => (await fx.client.ping()).runtime?.state !== 'starting', 10_000);
  return fx;
}

void describe('with a python runtime', () => {
  let fx: AgentFixture;
  before(async () => {
    fx = await readyAgent(['json', 'os.path as osp']);
  });
  after(async () => {
    await fx.stop();
  });

  void test('ping reports the runtime ready', async () => {
    assert.deepEqual((await fx.client.ping()).runtime, { kind: 'python', state: 'ready', ready: true });
  });

  void test('the last expression is the result, as JSON and repr', async () => {
    assert.deepEqual(await fx.client.eval('1 + 1'), { result: 2, repr: '2', error: null, exitCode: 0 });
    const r = await fx.client.eval('{"a": [1, 2.5, None, True], "b": "x"}');
    assert.deepEqual(r.result, { a: [1, 2.5, null, true], b: 'x' });
    const stmt = await fx.client.eval('y = 5');
    assert.equal(stmt.repr, null);
    assert.equal(stmt.result, null);
  });

  void test('globals and config imports persist across evals', async () => {
    await fx.client.eval(
      'counter = 41\ndef bump():\n    global counter\n    counter += 1\n    return counter',
    );
    assert.equal((await fx.client.eval('bump()')).result, 42);
    assert.equal((await fx.client.eval('bump()')).result, 43);
    assert.equal((await fx.client.eval('json.dumps([1])')).result, '[1]');
    assert.equal((await fx.client.eval('osp.join("a", "b")')).result, 'a/b');
  });

  void test('values that are not JSON have a null result but a repr', async () => {
    const r = await fx.client.eval('class P:\n    def __repr__(self): return "<P>"\nP()');
    assert.equal(r.result, null);
    assert.equal(r.repr, '<P>');
    assert.equal((await fx.client.eval('float("nan")')).result, null);
    assert.deepEqual((await fx.client.eval('(1, 2)')).result, [1, 2]);
  });

  void test('prints are captured and cannot corrupt the channel', async () => {
    const r = await fx.client.eval('import sys\nprint("hello")\nprint("warn", file=sys.stderr)\n7');
    assert.equal(r.stdout, 'hello\n');
    assert.equal(r.stderr, 'warn\n');
    assert.equal(r.result, 7);
    const bytes = await fx.client.eval('import os\nos.write(1, b"\\x00\\x01raw fd 1\\n")\n8');
    assert.equal(bytes.result, 8);
    assert.ok(
      await until(() => fx.log().includes('raw fd 1')),
      'fd 1 goes to the agent log, not the channel',
    );
  });

  void test('exceptions return the traceback and exit code 1', async () => {
    const r = await fx.client.eval('def f():\n    return 1 / 0\nf()');
    assert.equal(r.exitCode, 1);
    assert.equal(r.result, null);
    assert.match(r.error!, /ZeroDivisionError: division by zero/);
    assert.match(r.error!, /return 1 \/ 0/);
    assert.doesNotMatch(r.error!, /python_runtime/);
    const syntax = await fx.client.eval('def (');
    assert.equal(syntax.exitCode, 1);
    assert.match(syntax.error!, /SyntaxError/);
    const exit = await fx.client.eval('raise SystemExit(3)');
    assert.match(exit.error!, /SystemExit: 3/);
    assert.equal((await fx.client.eval('1')).result, 1, 'the runtime survives SystemExit');
  });

  void test('concurrent evals are serialised and each gets its own answer', async () => {
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => fx.client.eval(`import time\ntime.sleep(0.01)\n${i} * 10`)),
    );
    assert.deepEqual(
      results.map((r) => r.result),
      Array.from({ length: 10 }, (_, i) => i * 10),
    );
  });

  void test('a runtime that dies mid-eval is reported, then restarted by the next eval', async () => {
    await assert.rejects(
      fx.client.eval('import os\nos._exit(3)'),
      (err: unknown) =>
        err instanceof AgentError && /runtime exited during eval \(exit status 3\)/.test(err.message),
    );
    const after = await fx.client.eval('"back"');
    assert.equal(after.result, 'back');
    assert.equal((await fx.client.ping()).runtime?.ready, true);
    // Globals did not survive the restart; imports were redone.
    assert.equal((await fx.client.eval('counter')).exitCode, 1);
    assert.equal((await fx.client.eval('json.dumps(2)')).result, '2');
  });

  void test('the runtime process is gone after the agent stops', async () => {
    const other = await readyAgent([]);
    const pid = Number((await other.client.eval('import os\nos.getpid()')).result);
    assert.ok(processAlive(pid));
    await other.stop();
    assert.ok(await until(() => !processAlive(pid)));
  });
});

void test('a failing import is reported in ping and by eval', async () => {
  const fx = await readyAgent(['no_such_module_forkd']);
  try {
    const rt = (await fx.client.ping()).runtime!;
    assert.equal(rt.state, 'failed');
    assert.equal(rt.ready, false);
    assert.match(rt.error!, /ModuleNotFoundError: No module named 'no_such_module_forkd'/);
    await assert.rejects(
      fx.client.eval('1'),
      (err: unknown) => err instanceof AgentError && /eval runtime is not available/.test(err.message),
    );
  } finally {
    await fx.stop();
  }
});

void test('a bad runtime config is reported in ping', async () => {
  const fx = await startAgent({ runtimeConfig: { kind: 'python', argv: [] } });
  try {
    const rt = (await fx.client.ping()).runtime!;
    assert.equal(rt.state, 'failed');
    assert.match(rt.error!, /argv/);
  } finally {
    await fx.stop();
  }
});

void test('eval without a runtime says how to get one', async () => {
  const fx = await startAgent();
  try {
    await assert.rejects(fx.client.eval('1'), (err: unknown) => {
      assert.ok(err instanceof AgentError);
      assert.match(
        err.message,
        /^this image has no eval runtime \(build a recipe with a runtime, e\.g\. python-numpy\)/,
      );
      return true;
    });
  } finally {
    await fx.stop();
  }
});
