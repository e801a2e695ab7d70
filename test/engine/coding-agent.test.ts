// Real VMs from the coding-agent image: a parent whose warm-up made the
// sample project in /workspace/tally a git repository, and children that
// search, build and test it with the image's tools through exec, and whose
// commits are their own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { shOk, warmChildren } from '../support/engine.js';

const TAG = 'test-coding-agent';
const REPO = '/workspace/tally';
const warm = warmChildren(TAG, 'coding-agent', 2);

const child = (i: number) => warm.sandbox(i);

const HISTORY = [
  'Add a JSON report script in Node',
  'Add unit tests (make test)',
  'Count lines, words and bytes of stdin',
];

test('the checkout is a clean git repository with its history', async () => {
  const r = await child(0).agent.exec({ args: ['git', '-C', REPO, 'log', '--format=%an|%s'] });
  assert.equal(r.exitCode, 0, r.stderr.toString());
  assert.deepEqual(
    r.stdout.toString().trim().split('\n'),
    HISTORY.map((s) => `Tally Maintainer|${s}`),
  );
  assert.equal(
    await shOk(child(0), `cd ${REPO} && git status --porcelain && git branch --show-current`),
    'main\n',
  );
});

test('ripgrep finds the code', async () => {
  // A path is given: with none, rg searches its stdin when that is a pipe, as exec's is.
  const out = await shOk(child(0), `cd ${REPO} && rg -n --no-heading count_buffer src`);
  assert.deepEqual(out.trim().split('\n').sort(), [
    'src/count.c:5:void count_buffer(struct counts *c, const char *buf, size_t n, int *in_word)',
    'src/count.h:13:void count_buffer(struct counts *c, const char *buf, size_t n, int *in_word);',
    'src/main.c:13:\t\tcount_buffer(&c, buf, n, &in_word);',
  ]);
});

test('make builds the C program with gcc, python runs its tests and node its report script', async (t) => {
  const start = performance.now();
  const r = await child(1).agent.exec({
    shell: 'make && printf "one two\\nthree\\n" | ./tally && make test && ./scripts/report src/main.c',
    cwd: REPO,
  });
  t.diagnostic(`make, make test and node in a child: ${Math.round(performance.now() - start)} ms`);
  assert.equal(r.exitCode, 0, r.stderr.toString());
  const lines = r.stdout.toString().trim().split('\n');
  assert.ok(
    lines.includes('cc -O2 -Wall -Wextra -std=c11 -o tally src/count.o src/main.o'),
    lines.join('\n'),
  );
  assert.ok(lines.includes('2 3 14'), 'tally counted its input');
  assert.match(r.stderr.toString(), /Ran 3 tests in .*\n\nOK\n/);
  const report = JSON.parse(lines.at(-1) ?? '') as Record<string, { lines: number }>;
  assert.equal(report['src/main.c']?.lines, 20);
  // The build's outputs are ignored: the tree is still clean.
  assert.equal(await shOk(child(1), `git -C ${REPO} status --porcelain`), '');
  const gcc = await shOk(child(1), 'readlink -f "$(command -v cc)"; gcc -dumpversion');
  assert.equal(gcc, '/usr/bin/x86_64-linux-gnu-gcc-12\n12\n');
});

test('eval runs in the warm python runtime, beside the checkout', async () => {
  const r = await child(0).agent.eval(
    `subprocess.run(['git', 'rev-list', '--count', 'HEAD'], cwd='${REPO}', capture_output=True, text=True).stdout.strip()`,
  );
  assert.equal(r.error, null);
  assert.equal(r.result, '3');
});

test('a child’s commit is its own: the other child’s repository does not have it', async () => {
  await shOk(
    child(0),
    `cd ${REPO} && echo '- counts bytes, not characters' >> README.md && git commit -qam 'Document bytes' && git log -1 --format=%an`,
  ).then((author) => assert.equal(author, 'Sandbox Agent\n', 'the parent configured root’s git identity'));
  const counts = await Promise.all(
    warm.children.map((c) => shOk(c.sandbox, `git -C ${REPO} rev-list --count HEAD`)),
  );
  assert.deepEqual(counts, ['4\n', '3\n']);
});
