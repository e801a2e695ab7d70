// EXEC, STDIN and KILL against the real agent (--listen mode on the host).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AgentError, InvalidArgumentError, TimeoutError } from '../../../src/errors.js';
import { processAlive, startAgent, until, type AgentFixture } from './agent-harness.js';

let fx: AgentFixture;
before(async () => {
  fx = await startAgent();
});
after(async () => {
  await fx.stop();
});

void test('args exec: exit code, stdout, stderr', async () => {
  const r = await fx.client.exec({ args: ['sh', '-c', 'echo out; echo err >&2; exit 3'] });
  assert.equal(r.exitCode, 3);
  assert.equal(r.signal, null);
  assert.equal(r.timedOut, false);
  assert.equal(r.stdout.toString(), 'out\n');
  assert.equal(r.stderr.toString(), 'err\n');
});

void test('shell exec gets a clean env plus ENV, and runs in cwd', async () => {
  const r = await fx.client.exec({
    shell: 'pwd; echo "$FOO"; echo "$HOME"; echo "$PATH"; env | grep -c "^HOSTNAME=" || true',
    env: { FOO: 'bar baz' },
    cwd: fx.dir,
  });
  const lines = r.stdout.toString().trim().split('\n');
  assert.equal(r.exitCode, 0, r.stderr.toString());
  assert.equal(lines[0], fx.dir);
  assert.equal(lines[1], 'bar baz');
  assert.equal(lines[2], '/root');
  assert.equal(lines[3], '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');
  assert.equal(lines[4], '0', 'the host environment must not leak in');
});

void test('output is streamed to handlers as it arrives', async () => {
  const seen: string[] = [];
  const r = await fx.client.exec(
    { shell: 'echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three' },
    { onStdout: (c) => seen.push(`o:${c.toString()}`), onStderr: (c) => seen.push(`e:${c.toString()}`) },
  );
  assert.deepEqual(seen, ['o:one\n', 'e:two\n', 'o:three\n']);
  assert.equal(r.stdout.toString(), 'one\nthree\n');
});

void test('large output arrives whole and in order', async () => {
  const r = await fx.client.exec({ shell: 'head -c 5000000 /dev/zero | tr "\\0" x; seq 1 20000 >&2' });
  assert.equal(r.stdout.length, 5_000_000);
  assert.ok(r.stdout.every((b) => b === 0x78));
  assert.equal(r.stderr.toString().split('\n')[19999], '20000');
});

void test('two execs run concurrently and their output interleaves', async () => {
  // A blocks on stdin until B has finished: only concurrency lets this end.
  const a = fx.client.startExec({ shell: 'read x; echo "got $x"', stdinOpen: true });
  const b = await fx.client.exec({ shell: 'echo b' });
  assert.equal(b.stdout.toString(), 'b\n');
  a.writeStdin('hello\n');
  const ra = await a.wait();
  assert.equal(ra.stdout.toString(), 'got hello\n');

  const order: string[] = [];
  const tick = (name: string) => ({
    onStdout: (c: Buffer) =>
      order.push(
        ...c
          .toString()
          .trim()
          .split('\n')
          .map(() => name),
      ),
  });
  const script = (name: string) => `for i in 1 2 3 4; do echo ${name}$i; sleep 0.1; done`;
  await Promise.all([
    fx.client.exec({ shell: script('x') }, tick('x')),
    fx.client.exec({ shell: script('y') }, tick('y')),
  ]);
  assert.equal(order.length, 8);
  assert.ok(
    order.indexOf('y') < order.lastIndexOf('x') && order.indexOf('x') < order.lastIndexOf('y'),
    order.join(),
  );
});

void test('stdin: inline bytes are delivered exactly, then closed', async () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const r = await fx.client.exec({ args: ['cat'], stdin: Buffer.concat([all, all]) });
  assert.deepEqual(r.stdout, Buffer.concat([all, all]));
});

void test('stdin: streamed writes keep their order, closeStdin ends the input', async () => {
  const h = fx.client.startExec({ args: ['cat'], stdinOpen: true });
  const parts = Array.from({ length: 50 }, (_, i) => `line ${i}\n`);
  for (const p of parts) h.writeStdin(p);
  h.closeStdin();
  const r = await h.wait();
  assert.equal(r.stdout.toString(), parts.join(''));
});

void test('stdin larger than one frame is sent in chunks', async () => {
  const big = Buffer.alloc(20 * 1024 * 1024, 7);
  const r = await fx.client.exec({ shell: 'wc -c', stdin: big }, {}, { timeoutMs: 30_000 });
  assert.equal(r.stdout.toString().trim(), String(big.length));
});

void test('a KILL sent right after EXEC is not lost', async () => {
  const h = fx.client.startExec({ args: ['sleep', '30'] });
  h.kill();
  const r = await h.wait();
  assert.equal(r.signal, 'SIGKILL');
});

void test('kill signals the process group', async () => {
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const h = fx.client.startExec({ shell: 'echo started; sleep 30' }, { onStdout: () => started() });
  await running;
  h.kill('SIGTERM');
  const r = await h.wait();
  assert.equal(r.signal, 'SIGTERM');
  assert.equal(r.exitCode, 143);
  assert.equal(r.timedOut, false);
});

void test('a timeout kills the whole process tree and reports timed_out', async () => {
  const r = await fx.client.exec({ shell: 'sleep 30 & echo $!; sleep 30', timeoutMs: 300 });
  assert.equal(r.timedOut, true);
  assert.equal(r.signal, 'SIGKILL');
  assert.equal(r.exitCode, 137);
  const bg = Number(r.stdout.toString().trim());
  assert.ok(bg > 0);
  // The orphaned background sleep is killed with its group and reaped.
  assert.ok(await until(() => !processAlive(bg)), `background pid ${bg} survived`);
});

void test('orphans are reaped, not left as zombies', async () => {
  const r = await fx.client.exec({ shell: '(sleep 0.1 & echo $!)' });
  const orphan = Number(r.stdout.toString().trim());
  assert.ok(await until(() => !processAlive(orphan)));
  const zombies = await fx.client.exec({ shell: `ps -o stat= --ppid ${fx.proc.pid} | grep -c Z || true` });
  assert.equal(zombies.stdout.toString().trim(), '0');
});

void test('aborting an exec rejects it and kills the guest process', async () => {
  let pid = 0;
  const started = fx.client.exec(
    { shell: 'echo $$; exec sleep 30' },
    { onStdout: (c) => (pid = Number(c.toString().trim())) },
    { timeoutMs: 300 },
  );
  await assert.rejects(started, TimeoutError);
  assert.ok(pid > 0);
  assert.ok(await until(() => !processAlive(pid)), 'aborted exec left its process running');
  const ac = new AbortController();
  const p = fx.client.exec({ args: ['sleep', '30'] }, {}, { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (err: Error) => err.name === 'AbortedError' || err.name === 'AbortError');
});

void test('exec errors: unknown command, bad cwd, bad request', async () => {
  await assert.rejects(
    fx.client.exec({ args: ['no-such-command-forkd'] }),
    (err: unknown) => err instanceof AgentError && err.errno === 2 && /command not found/.test(err.message),
  );
  await assert.rejects(
    fx.client.exec({ args: ['true'], cwd: '/no/such/dir' }),
    (err: unknown) => err instanceof AgentError && err.errno === 2 && /chdir/.test(err.message),
  );
  await assert.rejects(
    fx.client.exec({ args: ['/etc/passwd'] }),
    (err: unknown) => err instanceof AgentError && err.errno === 13,
  );
  await assert.rejects(fx.client.exec({}), InvalidArgumentError);
  await assert.rejects(fx.client.exec({ args: ['true'], env: { 'A=B': 'x' } }), InvalidArgumentError);
  // The error's stack points at the caller, not at the socket reader.
  const err = await fx.client.exec({ args: ['no-such-command-forkd'] }).catch((e: Error) => e);
  assert.match(String((err as Error).stack), /exec\.test\.js/);
});

void test('exit codes above 128 from a normal exit are not signals', async () => {
  const r = await fx.client.exec({ shell: 'exit 200' });
  assert.equal(r.exitCode, 200);
  assert.equal(r.signal, null);
});
