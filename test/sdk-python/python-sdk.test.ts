// The Python SDK (sdk/python) against real daemons: its unittest suite runs
// with python3 against a daemon serving a tiny and a python-numpy snapshot
// (plus a second daemon that wants a bearer token, for the 401s), and the
// package installs with pip into a fresh venv with no network and imports
// from there. Every sandbox the suite made is gone afterwards, and no QEMU
// process is left.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { devNull, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import type { Engine } from '../../src/engine/index.js';
import { qemuProcessesUsing, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import { jsonCaller } from '../support/http.js';

const TINY_TAG = 'test-pysdk-tiny';
const PYTHON_TAG = 'test-pysdk-numpy';
const TOKEN = 'python-sdk-test-token-0123456789abcdef';
// dist/test/sdk-python/ → the repository root, wherever the runner was started.
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SDK = join(REPO, 'sdk/python');

let engine: Engine;
let daemon: RunningDaemon;
let guarded: RunningDaemon;
let scratch: string;
const api = jsonCaller(() => daemon.url);

interface Ran {
  status: number | null;
  output: string;
}

/**
 * Runs a program to its end without blocking the event loop (the daemons
 * under test live in this process), with stdout and stderr interleaved.
 */
function run(
  command: string,
  args: string[],
  opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Ran> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ status, output });
    });
  });
}

/** The environment without pip's configuration, the caller's FORKD_* settings or a PYTHONPATH. */
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(PIP_|FORKD_|PYTHON)/.test(key)) continue;
    env[key] = value;
  }
  // No .pyc files in the work tree.
  return { ...env, PYTHONDONTWRITEBYTECODE: '1', ...extra };
}

function tail(text: string): string {
  return text.split('\n').slice(-60).join('\n');
}

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TINY_TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  await engine.createSnapshot({ tag: PYTHON_TAG, recipe: 'python-numpy', replace: true });
  scratch = await mkdtemp(join(tmpdir(), 'forkd-python-sdk-'));
  daemon = await startDaemon({ dataDir: TEST_DATA_DIR, port: 0, auditLog: join(scratch, 'audit.jsonl') });
  const tokenFile = join(scratch, 'token');
  await writeFile(tokenFile, `${TOKEN}\n`);
  // A data dir of its own: the test daemon owns TEST_DATA_DIR.
  guarded = await startDaemon({
    dataDir: join(scratch, 'guarded-data'),
    port: 0,
    tokenFile,
    auditLog: join(scratch, 'guarded-audit.jsonl'),
  });
});

after(async () => {
  try {
    // Whatever a failed run left behind.
    const left = await api('GET', '/v1/sandboxes').catch(() => ({ json: [] }));
    for (const s of (left.json as Array<{ id: string }> | null) ?? [])
      await api('DELETE', `/v1/sandboxes/${s.id}`);
    await guarded?.close();
    await daemon?.close();
    assert.deepEqual(qemuProcessesUsing(engine.dataDir.runDir), []);
  } finally {
    await engine?.store.remove(TINY_TAG).catch(() => undefined);
    await engine?.store.remove(PYTHON_TAG).catch(() => undefined);
    await rm(scratch, { recursive: true, force: true });
  }
});

test('the Python SDK’s unittest suite passes against a real daemon, and kills every sandbox it made', async (t) => {
  const snapshotsBefore = ((await api('GET', '/v1/snapshots')).json as Array<{ tag: string }>).map(
    (s) => s.tag,
  );
  const started = Date.now();
  const r = await run('python3', ['-m', 'unittest', 'discover', '-s', 'sdk/python/tests', '-v'], {
    cwd: REPO,
    env: cleanEnv({
      FORKD_URL: daemon.url,
      FORKD_TEST_TINY_TAG: TINY_TAG,
      FORKD_TEST_PYTHON_TAG: PYTHON_TAG,
      FORKD_TEST_GUARDED_URL: guarded.url,
      FORKD_TEST_GUARDED_TOKEN: TOKEN,
      PYTHONPATH: SDK,
    }),
    timeoutMs: 480_000,
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  assert.equal(
    r.status,
    0,
    `python3 -m unittest exited ${String(r.status)} after ${seconds} s:\n${tail(r.output)}`,
  );
  const ran = /^Ran (\d+) tests? in [\d.]+s$/m.exec(r.output);
  assert.ok(ran, `no "Ran N tests" line:\n${tail(r.output)}`);
  assert.ok(Number(ran[1]) > 0, `no Python test ran:\n${tail(r.output)}`);
  t.diagnostic(`python3 -m unittest: ${ran[0].trim()}`);
  assert.match(r.output, /^OK$/m, `the suite must pass with no skips:\n${tail(r.output)}`);
  assert.doesNotMatch(r.output, /skipped/, 'no Python test may be skipped');
  assert.deepEqual((await api('GET', '/v1/sandboxes')).json, [], 'every sandbox the suite made was killed');
  const snapshotsAfter = ((await api('GET', '/v1/snapshots')).json as Array<{ tag: string }>).map(
    (s) => s.tag,
  );
  assert.deepEqual(snapshotsAfter.sort(), snapshotsBefore.sort(), 'the suite removed the snapshots it made');
});

test('pip installs the SDK into a fresh venv with no network, and it imports from there', async () => {
  const venv = join(scratch, 'venv');
  const made = await run('python3', ['-m', 'venv', venv], {
    cwd: scratch,
    env: cleanEnv({}),
    timeoutMs: 120_000,
  });
  assert.equal(
    made.status,
    0,
    `python3 -m venv failed (Debian needs python3-venv: scripts/setup.sh installs it):\n${tail(made.output)}`,
  );
  // No index, no pip configuration, and proxies that lead nowhere: anything pip tried to download would fail.
  const offline = cleanEnv({
    PIP_CONFIG_FILE: devNull,
    http_proxy: 'http://127.0.0.1:9',
    https_proxy: 'http://127.0.0.1:9',
    HTTP_PROXY: 'http://127.0.0.1:9',
    HTTPS_PROXY: 'http://127.0.0.1:9',
  });
  const python = join(venv, 'bin', 'python');
  const installed = await run(
    python,
    ['-m', 'pip', 'install', '--no-index', '--no-cache-dir', '--disable-pip-version-check', SDK],
    { cwd: scratch, env: offline, timeoutMs: 180_000 },
  );
  assert.equal(installed.status, 0, `pip install failed offline:\n${tail(installed.output)}`);
  // -I: only the venv's site-packages, not the work tree or PYTHONPATH.
  const script =
    'import json, forkd; print(json.dumps([forkd.__version__, forkd.__file__, forkd.Controller().list_sandboxes()]))';
  const imported = await run(python, ['-I', '-c', script], {
    cwd: scratch,
    env: cleanEnv({ FORKD_URL: daemon.url }),
    timeoutMs: 60_000,
  });
  assert.equal(imported.status, 0, imported.output);
  const [version, file, sandboxes] = JSON.parse(imported.output.trim()) as [string, string, unknown[]];
  assert.match(version, /^\d+\.\d+\.\d+/);
  assert.ok(file.startsWith(venv), `${file} is not inside the venv`);
  assert.ok(Array.isArray(sandboxes));
});
