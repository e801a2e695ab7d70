// The code interpreter's pure parts: request checks, which runtimes may run
// what, exception names from traceback text, the JSON lines an execution is
// answered with, the helper's replies read back, and the call code's shape.
// Then the helper itself in the real Python runtime, started on the host by
// the real agent (no VM): contexts, environment, working directories,
// result formats, and that the runtime stays as it was around the calls.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  displayText,
  executionLines,
  normalizeLanguage,
  outcomeOf,
  parseExecuteBody,
  parseTraceback,
  runtimeRefusal,
  splitOutput,
  type ExecutionOutcome,
} from '../../../src/daemon/e2b/code-interpreter.js';
import { helperCallCode, type HelperRequest } from '../../../src/daemon/e2b/interpreter-helper.js';
import { EnvdError } from '../../../src/daemon/e2b/target.js';
import { pythonRuntime, startAgent, until, type AgentFixture } from '../../engine/agent/agent-harness.js';

function refused(fn: () => unknown, status: number, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof EnvdError, String(err));
    assert.equal(err.status, status);
    assert.match(err.message, pattern);
    return true;
  });
}

test('execute bodies as the JS and Python SDKs send them', () => {
  assert.deepEqual(parseExecuteBody({ code: 'x' }), {
    code: 'x',
    contextId: null,
    language: null,
    envVars: {},
  });
  // The Python SDK sends nulls for what it was not given.
  assert.deepEqual(parseExecuteBody({ code: '1', context_id: null, language: null, env_vars: null }), {
    code: '1',
    contextId: null,
    language: null,
    envVars: {},
  });
  assert.deepEqual(parseExecuteBody({ code: '1', context_id: 'c1', env_vars: { A: 'b' } }), {
    code: '1',
    contextId: 'c1',
    language: null,
    envVars: { A: 'b' },
  });
  refused(() => parseExecuteBody(undefined), 400, /code/);
  refused(() => parseExecuteBody({ code: 3 }), 400, /code/);
  refused(() => parseExecuteBody({ code: '', context_id: 'c', language: 'python' }), 400, /not both/);
  refused(() => parseExecuteBody({ code: '', env_vars: { A: 1 } }), 400, /env_vars\.A/);
  refused(() => parseExecuteBody({ code: '', env_vars: { 'A=B': 'x' } }), 400, /name/);
  refused(() => parseExecuteBody({ code: '', env_vars: ['A'] }), 400, /object/);
  refused(() => parseExecuteBody({ code: 'x'.repeat(600_000) }), 413, /longer/);
});

test('languages: E2B spellings, Python only, and only with the python runtime', () => {
  assert.equal(normalizeLanguage(undefined), 'python');
  assert.equal(normalizeLanguage(' Python '), 'python');
  assert.equal(normalizeLanguage('JS'), 'javascript');
  assert.equal(normalizeLanguage('ts'), 'typescript');
  assert.equal(runtimeRefusal('python', 'python'), null);
  const js = runtimeRefusal('python', 'javascript');
  assert.equal(js?.status, 400);
  assert.match(js?.message ?? '', /Python only, not "javascript"/);
  // The JS SDK shows the body of a 404 only: the hint must reach the user.
  for (const kind of [null, 'node', 'jupyter']) {
    const r = runtimeRefusal(kind, 'python');
    assert.equal(r?.status, 404);
    assert.match(r?.message ?? '', /python-numpy/);
  }
  assert.match(runtimeRefusal(null, 'python')?.message ?? '', /no code runtime/);
  assert.match(runtimeRefusal('node', 'python')?.message ?? '', /a node runtime/);
});

test('exception names and messages from traceback text', () => {
  const simple = [
    'Traceback (most recent call last):',
    '  File "<cell-1>", line 1, in <module>',
    '    1/0',
    '    ~^~',
    'ZeroDivisionError: division by zero',
    '',
  ].join('\n');
  assert.deepEqual(parseTraceback(simple), { name: 'ZeroDivisionError', value: 'division by zero' });

  // Chained: the last exception is the one raised; its message runs over two lines.
  const chained = [
    'Traceback (most recent call last):',
    '  File "<cell-2>", line 2, in <module>',
    'KeyError: 1',
    '',
    'During handling of the above exception, another exception occurred:',
    '',
    'Traceback (most recent call last):',
    '  File "<cell-2>", line 4, in <module>',
    'ValueError: first',
    'second: not a name',
  ].join('\n');
  assert.deepEqual(parseTraceback(chained), { name: 'ValueError', value: 'first\nsecond: not a name' });

  // A syntax error has no traceback header; a qualified name loses its module.
  const syntax = '  File "<cell-3>", line 1\n    x =\n       ^\nSyntaxError: invalid syntax\n';
  assert.deepEqual(parseTraceback(syntax), { name: 'SyntaxError', value: 'invalid syntax' });
  const qualified =
    'Traceback (most recent call last):\n  File "x", line 1\nnumpy.linalg.LinAlgError: Singular matrix';
  assert.deepEqual(parseTraceback(qualified), { name: 'LinAlgError', value: 'Singular matrix' });
  assert.deepEqual(parseTraceback('Traceback (most recent call last):\n  File "x"\nStopIteration'), {
    name: 'StopIteration',
    value: '',
  });
  // Not Python's shape at all: the last line says what happened.
  assert.deepEqual(parseTraceback('the runtime died\n(killed by signal 9)\n'), {
    name: 'Error',
    value: '(killed by signal 9)',
  });
});

test('output split into E2B chunks, one line each', () => {
  assert.deepEqual(splitOutput(''), []);
  assert.deepEqual(splitOutput('a\n'), ['a\n']);
  assert.deepEqual(splitOutput('a\n\nb'), ['a\n', '\n', 'b']);
});

test('a string result shows without its quotes, as E2B shows it', () => {
  assert.equal(displayText("'hi'"), 'hi');
  assert.equal(displayText('"it\'s"'), "it's");
  assert.equal(displayText('42'), '42');
  assert.equal(displayText("'"), "'");
  assert.equal(displayText("['a']"), "['a']");
});

test('an execution as JSON lines: streams, main result, error, count', () => {
  const o: ExecutionOutcome = {
    stdout: 'one\ntwo\n',
    stderr: 'warn\n',
    result: { text: "{'a': 1}", json: { a: 1 }, html: '<b>1</b>' },
    error: null,
    count: 3,
  };
  const lines = executionLines(o, 'T');
  assert.ok(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')));
  assert.deepEqual(
    lines.map((l) => JSON.parse(l) as unknown),
    [
      { type: 'stdout', text: 'one\n', timestamp: 'T' },
      { type: 'stdout', text: 'two\n', timestamp: 'T' },
      { type: 'stderr', text: 'warn\n', timestamp: 'T' },
      { type: 'result', text: "{'a': 1}", json: { a: 1 }, html: '<b>1</b>', is_main_result: true },
      { type: 'number_of_executions', execution_count: 3 },
    ],
  );
  const failed = executionLines(
    { stdout: '', stderr: '', result: null, error: { name: 'E', value: 'v', traceback: 't' }, count: null },
    'T',
  );
  assert.deepEqual(
    failed.map((l) => JSON.parse(l) as unknown),
    [{ type: 'error', name: 'E', value: 'v', traceback: 't' }],
  );
});

test("the helper's replies read back", () => {
  const base = { repr: '<forkd e2b reply>', error: null, exitCode: 0 };
  const ok = outcomeOf({
    ...base,
    result: { count: 2, result: { text: '2' }, error: null },
    stdout: 'x\n',
  });
  assert.deepEqual(ok, { stdout: 'x\n', stderr: '', result: { text: '2' }, error: null, count: 2 });

  const raised = outcomeOf({
    ...base,
    result: { count: 1, result: null, error: { name: 'NameError', value: "name 'y'", traceback: 'tb' } },
  });
  assert.deepEqual(raised, {
    stdout: '',
    stderr: '',
    result: null,
    error: { name: 'NameError', value: "name 'y'", traceback: 'tb' },
    count: 1,
  });

  const missing = outcomeOf({ ...base, result: { status: 404, message: 'context c not found' } });
  assert.ok(missing instanceof EnvdError);
  assert.equal(missing.status, 404);

  // The runtime failed around the helper: its traceback is the error.
  const broken = outcomeOf({
    ...base,
    result: null,
    repr: null,
    exitCode: 1,
    error: "Traceback (most recent call last):\nNameError: name 'exec' is not defined\n",
  });
  assert.ok(!(broken instanceof EnvdError));
  assert.equal(broken.error?.name, 'NameError');

  // A value too big for the runtime's reply comes back as null.
  const huge = outcomeOf({ ...base, result: null });
  assert.ok(!(huge instanceof EnvdError));
  assert.equal(huge.error?.name, 'ResultTooLarge');
});

test('the call code is one expression carrying its data base64-encoded', () => {
  const code = "print('}\\'\"')\n\u00e9\ud83d\ude00";
  const call = helperCallCode({ op: 'execute', context: null, code, env: {}, sandbox_env: {} });
  const lines = call.trimEnd().split('\n');
  assert.equal(lines.length, 2, 'a comment line, then the expression');
  assert.equal(lines[0], '# forkd e2b call');
  const req = /\.call\(globals\(\), '([A-Za-z0-9+/=]+)'\)$/.exec(lines[1]!);
  assert.ok(req, lines[1]!.slice(-80));
  assert.deepEqual(JSON.parse(Buffer.from(req[1]!, 'base64').toString('utf8')), {
    op: 'execute',
    context: null,
    code,
    env: {},
    sandbox_env: {},
  });
  // The helper's module name is the same for every call of this daemon.
  const name = /modules\.get\('(_forkd_e2b_[0-9a-f]{12})'\)/.exec(lines[1]!)?.[1];
  assert.ok(name);
  assert.ok(helperCallCode({ op: 'list' }).includes(name));
});

void describe('the helper in a real Python runtime (host agent)', () => {
  let fx: AgentFixture;
  let dir: string;
  before(async () => {
    fx = await startAgent({
      runtimeConfig: { kind: 'python', argv: ['python3', pythonRuntime], imports: ['json'] },
    });
    await until(async () => (await fx.client.ping()).runtime?.state !== 'starting', 10_000);
    dir = mkdtempSync(join(tmpdir(), 'forkd-ci-unit-'));
  });
  after(async () => {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function call(req: HelperRequest): Promise<Record<string, unknown>> {
    const r = await fx.client.eval(helperCallCode(req));
    assert.equal(r.error, null, r.error ?? '');
    return r.result as Record<string, unknown>;
  }

  async function run(code: string, context: string | null = null, env: Record<string, string> = {}) {
    const r = await fx.client.eval(
      helperCallCode({ op: 'execute', context, code, env, sandbox_env: { SBX: 'set' } }),
    );
    const o = outcomeOf(r);
    if (o instanceof EnvdError) throw o;
    return o;
  }

  void test("the default context is the runtime's globals; a new one is a namespace of its own", async () => {
    assert.deepEqual((await run('x = 41\nx + 1')).result, { text: '42' });
    assert.equal((await fx.client.eval('x')).result, 41, 'plain evals see the same globals');
    assert.equal((await fx.client.eval('json.__name__')).result, 'json', 'with the warm imports');
    const created = await call({ op: 'create', id: 'c1', cwd: dir });
    assert.deepEqual(created.context, { id: 'c1', language: 'python', cwd: dir });
    assert.equal((await run('x', 'c1')).error?.name, 'NameError');
    await run('x = "c1"; import os; os.chdir("/")', 'c1');
    assert.deepEqual((await run('x, os.getcwd()', 'c1')).result, { text: "('c1', '/')" });
    assert.equal((await run('x')).result?.text, '41');
    const listed = (await call({ op: 'list' })).contexts as Array<{ id: string; cwd: string }>;
    assert.deepEqual(
      listed.map((c) => [c.id, c.cwd]),
      [
        ['default', listed[0]!.cwd],
        ['c1', '/'],
      ],
      "a context's chdir stays with it",
    );
    assert.equal((await run('1', 'nope').catch((e: unknown) => e)) instanceof EnvdError, true);
    await call({ op: 'restart', id: 'c1' });
    const restarted = await run('import os\nos.getcwd(), "x" in dir()', 'c1');
    assert.equal(restarted.result?.text, `('${dir}', False)`, 'a restart: fresh names, first cwd');
    assert.equal(restarted.count, 1);
    await call({ op: 'remove', id: 'c1' });
    assert.deepEqual(await call({ op: 'remove', id: 'c1' }), {
      status: 404,
      message: 'context c1 not found',
    });
    assert.deepEqual(await call({ op: 'create', id: 'c2', cwd: join(dir, 'missing') }), {
      status: 400,
      message: `cwd ${join(dir, 'missing')} is not a directory in the sandbox`,
    });
  });

  void test("env vars: a call's for the call, the sandbox's for good; the runtime's cwd is put back", async () => {
    const before = (await fx.client.eval('import os; os.getcwd()')).result;
    const r = await run('import os\nos.environ.get("ONE"), os.environ.get("SBX")', null, { ONE: '1' });
    assert.equal(r.result?.text, "('1', 'set')");
    assert.equal(
      (await fx.client.eval('os.environ.get("ONE"), os.environ.get("SBX")')).repr,
      "(None, 'set')",
    );
    assert.equal((await fx.client.eval('os.getcwd()')).result, before);
  });

  void test('results: display methods, json for plain data, none for None or a trailing semicolon', async () => {
    const html = await run(
      'class H:\n    def _repr_html_(self): return "<b>h</b>"\n    def _repr_png_(self): return b"PNG"\n    def __repr__(self): return "H()"\nH()',
    );
    assert.deepEqual(html.result, {
      text: 'H()',
      html: '<b>h</b>',
      png: Buffer.from('PNG').toString('base64'),
    });
    assert.deepEqual((await run('[1, {"a": None}]')).result, {
      text: "[1, {'a': None}]",
      json: [1, { a: null }],
    });
    assert.deepEqual((await run('[float("nan")]')).result, { text: '[nan]' }, 'no json that is not JSON');
    assert.equal((await run('None')).result, null);
    assert.equal((await run('1;')).result, null);
    assert.deepEqual((await run('import asyncio\nawait asyncio.sleep(0)\n"awaited"')).result, {
      text: "'awaited'",
    });
  });

  void test("output, errors and the runtime staying up; _ is the user's, not the reply", async () => {
    const printed = await run('import sys\nprint("out")\nprint("err", file=sys.stderr)\n7');
    assert.equal(printed.stdout, 'out\n');
    assert.equal(printed.stderr, 'err\n');
    assert.equal((await run('_')).result?.text, '7');
    const exited = await run('raise SystemExit(3)');
    assert.deepEqual([exited.error?.name, exited.error?.value], ['SystemExit', '3']);
    const deep = await run('def f():\n    raise KeyError("k")\nf()');
    assert.equal(deep.error?.name, 'KeyError');
    assert.match(
      deep.error?.traceback ?? '',
      /^Traceback[^]*<cell-\d+>", line 3, in <module>[^]*line 2, in f/,
    );
    assert.doesNotMatch(deep.error?.traceback ?? '', /forkd-e2b/);
    assert.equal((await run('1 + 1')).result?.text, '2');
  });

  void test('the helper installs once, and its calls leave no source behind', async () => {
    const count = async () =>
      (
        await fx.client.eval(
          'import sys, linecache\nsum(k.startswith("_forkd_e2b_") for k in sys.modules), len(linecache.cache)',
        )
      ).result as number[];
    await run('1');
    const [modules, cached] = await count();
    for (let i = 0; i < 5; i++) await run('2');
    const [modulesAfter, cachedAfter] = await count();
    assert.equal(modules, 1);
    assert.equal(modulesAfter, 1);
    // Each cell's source stays (tracebacks of functions it defined need it), each call's does not.
    assert.ok(cachedAfter! <= cached! + 5 + 1, `${cached} -> ${cachedAfter}`);
  });
});
