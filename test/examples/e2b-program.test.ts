// The README's promise: a program written for E2B runs unchanged against
// forkd after `eval "$(forkd e2b env)"`. A real daemon (token required), the
// CLI's own output evaluated by a shell, and examples/e2b-program run with
// that environment only: create (E2B's default template, a snapshot of that
// name made from the python-numpy recipe), commands, files, runCode state, fork and kill.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Engine } from '../../src/engine/index.js';
import { testEngine } from '../support/engine.js';
import { startE2bDaemon, type E2bTestDaemon } from '../support/e2b-daemon.js';

const run = promisify(execFile);
let e2b: E2bTestDaemon;

/** The code interpreter SDK's default template: a snapshot of that name serves it (made from python-numpy). */
const TEMPLATE = 'code-interpreter-v1';
let engine: Engine;

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TEMPLATE, recipe: 'python-numpy', replace: true });
  e2b = await startE2bDaemon('e2b-program');
});

after(async () => {
  await e2b.close();
  await engine.store.remove(TEMPLATE).catch(() => undefined);
  await engine.close();
});

test('eval "$(forkd e2b env)" points an unchanged E2B program at forkd', async () => {
  const cli = resolve('dist/src/cli/main.js');
  const program = resolve('examples/e2b-program/program.mjs');
  const script = `eval "$(node ${cli} e2b env --url ${e2b.daemon.url} --token-file ${e2b.tokenFile})" && exec node ${program}`;
  // Nothing of E2B's in the environment but what the CLI printed.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('E2B_')));
  const { stdout } = await run('bash', ['-c', script], { env, timeout: 900_000 });
  const seen = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  assert.equal(seen.uname, 'Linux');
  assert.equal(seen.file, '1 2 3 4\n');
  assert.equal(seen.stdout, 'mean is 2.5\n');
  assert.equal(seen.sum, '10');
  assert.match(String(seen.error), /^ZeroDivisionError: division by zero/);
  assert.deepEqual(
    (seen.forks as Array<{ value?: string }>).map((f) => f.value),
    ['100', '100'],
  );
  const left = await fetch(`${e2b.daemon.url}/e2b/v2/sandboxes`, { headers: { 'x-api-key': e2b.token } });
  assert.deepEqual(await left.json(), [], 'the program killed what it made');
});
