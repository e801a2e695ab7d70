// Real VMs from the jupyter-kernel image: a parent whose warm runtime started
// an IPython kernel and ran its first cell before the freeze, and children
// whose evals are notebook cells: rich outputs, streams, tracebacks, a
// deadline that interrupts, state of their own and random numbers of their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { warmChildren } from '../support/engine.js';

const TAG = 'test-jupyter-kernel';
const warm = warmChildren(TAG, 'jupyter-kernel', 2);

const child = (i: number) => warm.sandbox(i).agent;

test('the snapshot waited for the kernel and its first cell', async () => {
  const { manifest } = await warm.engine.store.getReady(TAG);
  assert.deepEqual(manifest.runtime, { kind: 'jupyter', imports: [] });
  assert.deepEqual((await child(0).ping()).runtime, { kind: 'jupyter', state: 'ready', ready: true });
  // The parent's warm-up cell was not stored: a child's first cell is In[1].
  const r = await child(0).eval("import sys\n(get_ipython().execution_count, 'ipykernel' in sys.modules)");
  assert.equal(r.error, null);
  assert.deepEqual(r.result, [
    { output_type: 'execute_result', data: { 'text/plain': '(1, True)' }, execution_count: 1 },
  ]);
  assert.equal(r.repr, '(1, True)');
});

test('a cell answers with its rich outputs, their text and its streams', async () => {
  const c = child(0);
  const printed = await c.eval(
    "print('hello')\nimport sys; print('oops', file=sys.stderr)\n!echo from-shell\n6 * 7",
  );
  // IPython runs ! commands on a pty (pexpect): their lines end in \r\n, as in a notebook.
  assert.equal(printed.stdout, 'hello\nfrom-shell\r\n');
  assert.equal(printed.stderr, 'oops\n');
  assert.equal(printed.repr, '42');
  const shown = await c.eval(
    "from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))\n{'a': [1, None]}",
  );
  assert.equal(shown.error, null);
  assert.deepEqual(shown.result, [
    {
      output_type: 'display_data',
      data: { 'text/plain': '<IPython.core.display.HTML object>', 'text/html': '<b>hi</b>' },
    },
    { output_type: 'execute_result', data: { 'text/plain': "{'a': [1, None]}" }, execution_count: 3 },
  ]);
  assert.equal(shown.repr, "<IPython.core.display.HTML object>\n{'a': [1, None]}");
  // A statement, and a None value, display nothing (as in a notebook).
  assert.deepEqual(await c.eval('z = 1'), { result: null, repr: null, error: null, exitCode: 0 });
  assert.deepEqual(await c.eval('None'), { result: null, repr: null, error: null, exitCode: 0 });
});

test('state persists within a child and is private to it', async () => {
  const [a, b] = [child(0), child(1)];
  await a.eval('x = 40\ndef bump():\n    global x\n    x += 1\n    return x');
  await a.eval('bump()');
  assert.equal((await a.eval('bump()')).repr, '42');
  const other = await b.eval('x');
  assert.equal(other.exitCode, 1);
  assert.match(other.error ?? '', /NameError: name 'x' is not defined/);
});

test('errors come back as tracebacks without colours, and the kernel goes on', async () => {
  const c = child(1);
  const thrown = await c.eval("def f():\n    raise ValueError('bad input')\nf()");
  assert.equal(thrown.exitCode, 1);
  assert.equal(thrown.result, null);
  assert.match(thrown.error ?? '', /ValueError: bad input\n$/);
  assert.match(thrown.error ?? '', /----> 3 f\(\)/, 'IPython’s traceback, with the failing line');
  assert.ok(!thrown.error?.includes('\u001b['), 'no ANSI colour codes');
  const syntax = await c.eval('def (:');
  assert.equal(syntax.exitCode, 1);
  assert.match(syntax.error ?? '', /SyntaxError/);
  assert.equal((await c.eval('1 + 1')).repr, '2');
});

test('a cell past its deadline is interrupted and the kernel keeps its state', async () => {
  const c = child(1);
  // The runtime reads its deadline at each eval (default 300 s).
  await c.writeFile('/etc/forkd/jupyter.json', '{"eval_timeout_secs": 2}');
  try {
    const started = Date.now();
    const r = await c.eval('kept = 7\nimport time\nwhile True:\n    time.sleep(0.05)');
    assert.equal(r.exitCode, 1);
    assert.match(r.error ?? '', /KeyboardInterrupt/);
    assert.match(r.error ?? '', /\(interrupted: the cell ran past its 2-s deadline\)\n$/);
    assert.ok(Date.now() - started < 30_000, `answered in ${Date.now() - started} ms`);
  } finally {
    await c.exec({ shell: 'rm -f /etc/forkd/jupyter.json' });
  }
  assert.equal((await c.eval('kept')).repr, '7');
});

test('random differs between children of one snapshot', async () => {
  const draws = await Promise.all(
    warm.children.map((c) => c.sandbox.agent.eval('import random\n[random.random() for _ in range(2)]')),
  );
  const reprs = draws.map((d) => d.repr);
  assert.equal(new Set(reprs).size, warm.children.length, reprs.join(' '));
});
