// EVAL against the real Node runtime (guest/runtime/node_runtime.js) on the
// host's node, started by the agent, side by side with the Python runtime
// for the shapes of results. The runtime file is copied out of the repo: the
// repo's package.json says "type": "module", and the runtime is CommonJS, as
// in the guest (where no package.json is near it). acorn, its parser, comes
// from the repo's node_modules here and from Debian's node-acorn in a guest.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { pythonRuntime, startAgent, until, type AgentFixture } from './agent-harness.js';

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'forkd-node-runtime-'));
const nodeRuntime = join(scratch, 'node_runtime.js');
copyFileSync(join(repoRoot, 'guest/runtime/node_runtime.js'), nodeRuntime);
// A package beside the runtime, where a recipe's npm packages go in the guest.
const pkg = join(scratch, 'node_modules', 'forkd-test-pkg');
mkdirSync(pkg, { recursive: true });
writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'forkd-test-pkg', main: 'index.js' }));
writeFileSync(join(pkg, 'index.js'), "module.exports = { hello: 'from beside the runtime' };\n");

after(() => rmSync(scratch, { recursive: true, force: true }));

async function readyAgent(runtimeConfig: Record<string, unknown>): Promise<AgentFixture> {
  const fx = await startAgent({ runtimeConfig });
  await until(async () => (await fx.client.ping()).runtime?.state !== 'starting', 10_000);
  return fx;
}

void describe('with a node runtime', () => {
  let node: AgentFixture;
  let python: AgentFixture;
  before(async () => {
    node = await readyAgent({
      kind: 'node',
      argv: ['env', `NODE_PATH=${join(repoRoot, 'node_modules')}`, 'node', nodeRuntime],
      imports: ['fs', 'node:path', 'os as myos'],
    });
    python = await readyAgent({ kind: 'python', argv: ['python3', pythonRuntime], imports: [] });
  });
  after(async () => {
    await node.stop();
    await python.stop();
  });

  void test('ping reports the runtime ready', async () => {
    assert.deepEqual((await node.client.ping()).runtime, { kind: 'node', state: 'ready', ready: true });
  });

  void test('results have the shape the python runtime gives the same kind of value', async () => {
    const pairs: Array<[string, string, string]> = [
      ['a number', '6 * 7', '6 * 7'],
      ['a string', "'hi'", "'hi'"],
      ['an object', '({a: [1, 2.5, null, true], b: "x"})', '{"a": [1, 2.5, None, True], "b": "x"}'],
      ['no value (undefined, None)', 'undefined', 'None'],
      ['a statement', 'let y = 5', 'y = 5'],
      ['not JSON', 'new Map([[1, 2]])', '{1, 2}'],
    ];
    for (const [what, js, py] of pairs) {
      const [n, p] = await Promise.all([node.client.eval(js), python.client.eval(py)]);
      assert.deepEqual(n.result, p.result, what);
      assert.equal(typeof n.repr, typeof p.repr, what);
      assert.equal(n.error, null, what);
      assert.equal(n.exitCode, 0, what);
    }
    assert.deepEqual(await node.client.eval("'hi'"), {
      result: 'hi',
      repr: "'hi'",
      error: null,
      exitCode: 0,
    });
    assert.equal((await node.client.eval('undefined')).repr, 'undefined');
    assert.equal((await node.client.eval('({a: 1})')).repr, '{ a: 1 }');
    assert.deepEqual(
      (await node.client.eval('{ a: 1, b: 2 }')).result,
      { a: 1, b: 2 },
      'an object, not a block',
    );
    assert.equal((await node.client.eval('NaN')).result, null, 'NaN is not JSON (python says so too)');
  });

  void test('declarations persist across evals, and top-level await works', async () => {
    await node.client.eval('let counter = 41; function bump() { return ++counter }');
    assert.equal((await node.client.eval('bump()')).result, 42);
    assert.equal((await node.client.eval('const x = await Promise.resolve(2); x * 3')).result, 6);
    assert.equal((await node.client.eval('x + 1')).result, 3, 'a declaration next to an await persists');
    const slow = await node.client.eval("await new Promise((r) => setTimeout(() => r('late'), 20))");
    assert.equal(slow.result, 'late');
    await node.client.eval('const { p, q: [r] } = await Promise.resolve({ p: 1, q: [2] }); class K {}');
    assert.deepEqual((await node.client.eval('[p, r, typeof K]')).result, [1, 2, 'function']);
    assert.equal((await node.client.eval("(await import('node:os')).platform()")).result, process.platform);
  });

  void test('config imports are globals, require and import() work', async () => {
    assert.equal((await node.client.eval('typeof fs.readFileSync')).result, 'function');
    assert.equal((await node.client.eval("path.join('a', 'b')")).result, 'a/b');
    assert.equal((await node.client.eval('myos.platform()')).result, process.platform);
    assert.equal(
      (await node.client.eval("require('zlib').gunzipSync(require('zlib').gzipSync('z')) + ''")).result,
      'z',
    );
    const hello = 'from beside the runtime';
    assert.equal((await node.client.eval("require('forkd-test-pkg').hello")).result, hello);
    assert.equal((await node.client.eval("(await import('forkd-test-pkg')).default.hello")).result, hello);
  });

  void test('console output is captured and cannot corrupt the channel', async () => {
    const r = await node.client.eval("console.log('hello'); console.error('warn'); 7");
    assert.equal(r.stdout, 'hello\n');
    assert.equal(r.stderr, 'warn\n');
    assert.equal(r.result, 7);
    const tick = await node.client.eval("Promise.resolve().then(() => process.stdout.write('later\\n')); 8");
    assert.equal(tick.stdout, 'later\n', 'what the code queued for right away is this eval’s');
    const raw = await node.client.eval("require('fs').writeSync(1, 'raw fd 1\\n'); 9");
    assert.equal(raw.result, 9);
    assert.ok(await until(() => node.log().includes('raw fd 1')), 'fd 1 goes to the agent log');
  });

  void test('errors come back with their name, message and stack, without the runtime’s frames', async () => {
    const r = await node.client.eval("function f() {\n  throw new RangeError('too far');\n}\nf()");
    assert.equal(r.exitCode, 1);
    assert.equal(r.result, null);
    assert.equal(r.repr, null);
    assert.match(r.error!, /RangeError: too far\n {4}at f \(<eval-\d+>:2:9\)/);
    assert.doesNotMatch(r.error!, /node_runtime|node:vm/);
    const rejected = await node.client.eval("await Promise.reject(new TypeError('nope'))");
    assert.match(rejected.error!, /^TypeError: nope/);
    assert.match((await node.client.eval("throw 'a string'")).error!, /^Uncaught 'a string'$/);
    const syntax = await node.client.eval('def (');
    assert.equal(syntax.exitCode, 1);
    assert.match(syntax.error!, /SyntaxError: Unexpected end of input$/);
    assert.match((await node.client.eval('await foo(')).error!, /SyntaxError/);
    const exit = await node.client.eval('process.exit(3)');
    assert.match(exit.error!, /ProcessExit: process\.exit\(3\)/);
    const timer = await node.client.eval(
      "setTimeout(() => { throw new Error('in a timer') }, 5); await new Promise((r) => setTimeout(r, 50)); 1",
    );
    assert.match(timer.stderr ?? '', /Uncaught Error: in a timer/);
    assert.equal(
      (await node.client.eval('2')).result,
      2,
      'the runtime survives process.exit and stray errors',
    );
  });

  void test('processes the code starts do not hold the channel', async () => {
    const r = await node.client.eval(
      "require('child_process').execSync('readlink /proc/$$/fd/3 /proc/$$/fd/4 || true').toString()",
    );
    assert.equal(r.result, '');
  });

  void test('after a hygiene with entropy the runtime reseeds and evals on', async () => {
    await node.client.hygiene({ timeUnixNs: BigInt(Date.now()) * 1_000_000n, entropy: Buffer.alloc(32, 7) });
    const r = await node.client.eval('const draws = Array.from({ length: 1000 }, Math.random); draws.length');
    assert.equal(r.result, 1000, 'the reseed prefix is not part of the code');
    const stats = await node.client.eval(
      'draws.every((d) => d >= 0 && d < 1) && new Set(draws).size === 1000 && Math.random !== undefined',
    );
    assert.equal(stats.result, true);
  });
});

void test('a module that cannot be required is reported in ping', async () => {
  const fx = await readyAgent({
    kind: 'node',
    argv: ['node', nodeRuntime],
    imports: ['no-such-module-forkd'],
  });
  try {
    const rt = (await fx.client.ping()).runtime!;
    assert.equal(rt.state, 'failed');
    assert.match(rt.error!, /Cannot find module 'no-such-module-forkd'/);
  } finally {
    await fx.stop();
  }
});
