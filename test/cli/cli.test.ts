// The CLI as a user meets it: exit codes, one-line errors, --json shapes.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { runCli } from '../support/cli.js';
import { qemuProcessesUsing, runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import type { Engine } from '../../src/engine/index.js';

const TAG = 'test-cli-tiny';
let engine: Engine;

const forkd = (...args: string[]) => runCli(['--data-dir', TEST_DATA_DIR, ...args]);

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
});

after(async () => {
  await engine.store.remove(TAG).catch(() => undefined);
});

test('--help lists the commands', () => {
  const r = forkd('--help');
  assert.equal(r.status, 0);
  for (const cmd of ['doctor', 'snapshot', 'fork', 'run', 'images', 'rmi', 'cleanup', 'quickstart'])
    assert.match(r.stdout, new RegExp(`\\b${cmd}\\b`));
});

test('fork --json prints the documented object', () => {
  const r = forkd('fork', '--tag', TAG, '-n', '3', '--exec', 'echo hi', '--json', '-q');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    n: number;
    ok: number;
    wall_ms: number;
    children: { id: string; ok: boolean; stdout: string }[];
  };
  assert.equal(out.n, 3);
  assert.equal(out.ok, 3);
  assert.ok(out.wall_ms > 0);
  assert.equal(out.children.length, 3);
  for (const c of out.children) {
    assert.match(c.id, /^sb-[a-z0-9]+$/);
    assert.equal(c.stdout, 'hi\n');
  }
  assert.deepEqual(runDirEntries(engine), []);
});

test('run streams output and exits with the command’s exit code', () => {
  const r = forkd('run', '--tag', TAG, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7');
  assert.equal(r.status, 7);
  assert.equal(r.stdout, 'out\n');
  assert.match(r.stderr, /err/);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
});

test('bad input gets one line naming the problem and the fix, and writes nothing', async () => {
  const cases: [string[], RegExp, number][] = [
    [['fork', '--tag', '../x'], /invalid tag "\.\.\/x" \(use 1-64 characters/, 2],
    [['fork', '--tag', 'nope'], /snapshot "nope" not found/, 1],
    [['fork', '--tag', TAG, '-n', '0'], /-n must be an integer from 1 to 1000/, 2],
    [['fork', '--tag', TAG, '-n', '5000'], /-n must be an integer from 1 to 1000/, 2],
    [['fork', '-n', '2'], /required option '-t, --tag <tag>' not specified/, 2],
    [
      ['snapshot', '--tag', 'x', '--image', 'nonexistent'],
      /unknown image recipe 'nonexistent' \(valid: coding-agent, jupyter-kernel, nodejs, playwright-browser, postgres-fixture, python-datasci, python-numpy, tiny; or a recipe file: \.\/my\.yaml\)/,
      2,
    ],
  ];
  for (const [args, message, status] of cases) {
    const r = forkd(...args);
    assert.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
    const lines = r.stderr
      .trim()
      .split('\n')
      .filter((l) => !/^\[\s*\d+\.\ds\]/.test(l)); // progress lines
    assert.equal(lines.length, 1, r.stderr);
  }
  assert.equal(await engine.store.exists('x'), false);
});

test('doctor --json reports checks with statuses', () => {
  const r = forkd('doctor', '--json');
  const out = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; status: string }[] };
  const qemu = out.checks.find((c) => c.name === 'qemu');
  assert.equal(qemu?.status, 'pass');
  assert.ok(out.checks.some((c) => c.name === 'accelerator'));
  // Whether RAM files of diff chains are clones or copies: a pass or a warning, never a failure.
  assert.match(out.checks.find((c) => c.name === 'reflinks')?.status ?? '', /^(pass|warn)$/);
  assert.equal(r.status, out.ok ? 0 : 1);
});

test('fork --hold exits leaving children running; rmi refuses their snapshot as the API does; cleanup --all stops them and removes their files', () => {
  const held = forkd('fork', '--tag', TAG, '-n', '2', '--hold', '--json', '-q');
  assert.equal(held.status, 0, held.stderr);
  assert.equal(qemuProcessesUsing(engine.dataDir.runDir).length, 2);
  const inUse = forkd('rmi', TAG);
  assert.equal(inUse.status, 1);
  assert.match(
    inUse.stderr,
    new RegExp(`^forkd: error: snapshot ${TAG} has running sandboxes: sb-\\S+, sb-\\S+ \\(kill them first`),
  );
  const cleaned = forkd('cleanup', '--all', '--json');
  const report = JSON.parse(cleaned.stdout) as { killedVms: number[] };
  assert.equal(report.killedVms.length, 2);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

/** Start forkd, wait until `ready()` holds, send SIGINT, wait for it to exit. */
async function interrupt(args: string[], ready: () => boolean): Promise<number | null> {
  const child = spawn(process.execPath, ['dist/src/cli/main.js', '--data-dir', TEST_DATA_DIR, ...args], {
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ? 128 : code)),
  );
  let reached = false;
  for (let i = 0; i < 600 && !(reached = ready()); i++) await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGINT'); // in every case: a failed wait must not leave it running
  assert.ok(reached, 'the command got far enough to be interrupted');
  return exited;
}

test('SIGINT during a fork leaves no QEMU and no run dir', async () => {
  await interrupt(
    ['fork', '--tag', TAG, '-n', '2', '--exec', 'sleep 30'],
    () => qemuProcessesUsing(engine.dataDir.runDir).length >= 2,
  );
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
});

test('SIGINT while a snapshot is written leaves no half-written snapshot', async () => {
  const tag = 'test-cli-interrupted';
  await interrupt(
    ['snapshot', '--tag', tag, '--image', 'tiny'],
    () => qemuProcessesUsing(engine.dataDir.runDir).length >= 1,
  );
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(await engine.store.exists(tag), false);
  assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  assert.deepEqual(runDirEntries(engine), []);
  // The tag is free again: no stale lock.
  const writer = await engine.store.begin(tag);
  await writer.abort();
});

test('images --json lists the snapshot and the image it came from; rmi of an unknown tag fails in one line', () => {
  const r = forkd('images', '--json');
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as {
    snapshots: { tag: string; status: string; recipe: string }[];
    images: { recipe: string }[];
  };
  const snap = out.snapshots.find((s) => s.tag === TAG);
  assert.equal(snap?.status, 'ready');
  assert.equal(snap?.recipe, 'tiny');
  assert.ok(out.images.some((i) => i.recipe === 'tiny'));
  const missing = forkd('rmi', 'no-such-tag');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^forkd: error: snapshot "no-such-tag" not found/);
  assert.equal(missing.stderr.trim().split('\n').length, 1);
});
