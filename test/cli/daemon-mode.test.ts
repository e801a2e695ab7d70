// `forkd serve` as its own process and the CLI's daemon-mode commands
// against it, including a SIGKILL of the daemon with 10 sandboxes running.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { runCli } from '../support/cli.js';
import { createServer } from 'node:net';
import { qemuProcessesUsing, runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';
import type { Engine } from '../../src/engine/index.js';

const TAG = 'test-cli-daemon';
let engine: Engine;
let port = 0;
let serve: ChildProcess | undefined;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const p = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return p;
}

async function startServe(): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['dist/src/cli/main.js', '--data-dir', TEST_DATA_DIR, 'serve', '--bind', `127.0.0.1:${port}`],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let log = '';
  child.stderr.on('data', (d: Buffer) => (log += d.toString()));
  for (let i = 0; i < 200; i++) {
    if (log.includes('listening on')) return child;
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`forkd serve did not start: ${log}`);
}

/** A daemon-mode command; --url goes before the args, which may end in `-- cmd …`. */
const forkd = (command: string, ...args: string[]) =>
  runCli([command, '--url', `http://127.0.0.1:${port}`, ...args]);

before(async () => {
  engine = testEngine();
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', replace: true, memoryMib: 256 });
  port = await freePort();
  serve = await startServe();
});

async function killServe(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

after(async () => {
  await killServe(serve);
  await engine.cleanup({ killRunning: true });
  await engine.store.remove(TAG).catch(() => undefined);
});

test('spawn, ls, exec, eval, ping and kill through the daemon', () => {
  const spawned = forkd('spawn', '--tag', TAG, '-n', '2', '--json');
  assert.equal(spawned.status, 0, spawned.stderr);
  const ids = (JSON.parse(spawned.stdout) as { id: string }[]).map((s) => s.id);
  assert.equal(ids.length, 2);
  const listed = JSON.parse(forkd('ls', '--json').stdout) as { id: string }[];
  assert.deepEqual(listed.map((s) => s.id).sort(), [...ids].sort());
  const exec = forkd('exec', '--sandbox', ids[0]!, '--', 'sh', '-c', 'echo out; echo err >&2; exit 3');
  assert.equal(exec.status, 3);
  assert.equal(exec.stdout, 'out\n');
  assert.equal(exec.stderr, 'err\n');
  const ping = forkd('ping', '--sandbox', ids[0]!, '--json');
  assert.equal((JSON.parse(ping.stdout) as { pong: boolean }).pong, true);
  const evalTiny = forkd('eval', '--sandbox', ids[0]!, '1+1');
  assert.notEqual(evalTiny.status, 0);
  assert.match(evalTiny.stderr, /no eval runtime/);
  const missing = forkd('exec', '--sandbox', 'sb-nope', '--', 'true');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /not found/);
  const killed = forkd('kill', '--all', '--json');
  assert.deepEqual((JSON.parse(killed.stdout) as { killed: string[] }).killed.sort(), [...ids].sort());
  assert.deepEqual(JSON.parse(forkd('ls', '--json').stdout), []);
});

test('SIGKILL the daemon with 10 sandboxes running: after a restart all 10 answer exec', async () => {
  const spawned = forkd('spawn', '--tag', TAG, '-n', '10', '--json');
  assert.equal(spawned.status, 0, spawned.stderr);
  const ids = (JSON.parse(spawned.stdout) as { id: string }[]).map((s) => s.id);
  await killServe(serve);
  const alive = ids.filter((id) => qemuProcessesUsing(engine.dataDir.vmRunDir(id) + '/').length >= 1);
  assert.equal(alive.length, 10, 'sandboxes outlive the daemon');
  serve = await startServe();
  for (const id of ids) {
    const r = forkd('exec', '--sandbox', id, '--', 'echo', id);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${id}\n`);
  }
  forkd('kill', '--tag', TAG);
  for (const id of ids) assert.deepEqual(qemuProcessesUsing(engine.dataDir.vmRunDir(id) + '/'), []);
  assert.ok(ids.every((id) => !runDirEntries(engine).includes(id)));
});

test('SIGTERM drains: an exec in flight completes, then the daemon exits and its sandboxes keep running', async () => {
  const spawned = forkd('spawn', '--tag', TAG, '--json');
  const id = (JSON.parse(spawned.stdout) as { id: string }[])[0]!.id;
  const exec = spawn(
    process.execPath,
    [
      'dist/src/cli/main.js',
      'exec',
      '--url',
      `http://127.0.0.1:${port}`,
      '--sandbox',
      id,
      '--',
      'sh',
      '-c',
      'sleep 5; echo done',
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  exec.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const execDone = new Promise<number | null>((resolve) => exec.on('exit', resolve));
  // Long enough for the client (a fresh Node process) to have its request in.
  await new Promise((r) => setTimeout(r, 2500));
  const serveExited = new Promise((resolve) => serve!.on('exit', resolve));
  serve!.kill('SIGTERM');
  assert.equal(await execDone, 0);
  assert.equal(out, 'done\n');
  await serveExited;
  assert.equal(
    qemuProcessesUsing(engine.dataDir.vmRunDir(id) + '/').length,
    1,
    'the sandbox outlives the daemon',
  );
  serve = await startServe();
  assert.equal(forkd('kill', id).status, 0);
});

test('a second forkd serve on the data dir exits at once naming the first; local commands on its sandboxes are refused', async () => {
  const spawned = forkd('spawn', '--tag', TAG, '--json');
  assert.equal(spawned.status, 0, spawned.stderr);
  const [sandbox] = JSON.parse(spawned.stdout) as { id: string }[];
  const other = await freePort();
  const started = Date.now();
  // With a sandbox running, a second daemon used to spend 10 s failing to re-attach it, then serve.
  const second = runCli(['--data-dir', TEST_DATA_DIR, 'serve', '--bind', `127.0.0.1:${other}`]);
  const ms = Date.now() - started;
  assert.equal(second.status, 1, second.stderr);
  assert.match(
    second.stderr,
    new RegExp(`owned by forkd serve \\(pid ${serve!.pid}, serving http://127\\.0\\.0\\.1:${port}`),
  );
  assert.ok(ms < 8000, `the second daemon took ${ms} ms to give up`);
  // Local mode would take the daemon's sandboxes from it: refused, naming the owner.
  const local = runCli(['--data-dir', TEST_DATA_DIR, 'cleanup', '--all']);
  assert.notEqual(local.status, 0, local.stdout);
  assert.match(local.stderr, new RegExp(`cannot stop running sandboxes: .*pid ${serve!.pid}`));
  const still = forkd('exec', '--sandbox', sandbox!.id, '--', 'true');
  assert.equal(still.status, 0, still.stderr);
  // A daemon that died leaves no claim behind.
  await killServe(serve);
  serve = await startServe();
  assert.equal(forkd('exec', '--sandbox', sandbox!.id, '--', 'true').status, 0);
  forkd('kill', sandbox!.id);
});
