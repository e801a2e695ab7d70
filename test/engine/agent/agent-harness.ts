// Runs the real compiled forkd-agent on the host in --listen mode for the
// integration tests, with a temp dir for its socket, runtime config and any
// files a test writes. stop() kills the agent (SIGTERM: it takes its execs
// and runtime down with it) and removes the temp dir.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../../../src/engine/agent/client.js';

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url));
export const agentBinary = join(repoRoot, 'guest/build/forkd-agent');
export const pythonRuntime = join(repoRoot, 'guest/runtime/python_runtime.py');

let built = false;
function buildAgent(): void {
  if (built) return;
  execFileSync('make', ['-s', '-C', join(repoRoot, 'guest')], { stdio: ['ignore', 'ignore', 'inherit'] });
  built = true;
}

export interface AgentFixture {
  client: AgentClient;
  dir: string;
  socketPath: string;
  proc: ChildProcess;
  /** The agent's stdout and stderr so far. */
  log(): string;
  stop(): Promise<void>;
}

export interface AgentFixtureOptions {
  /** Written as the runtime config; absent: the agent has no runtime. */
  runtimeConfig?: Record<string, unknown>;
}

/** Starts an agent and connects a client to it. */
export async function startAgent(opts: AgentFixtureOptions = {}): Promise<AgentFixture> {
  buildAgent();
  const dir = mkdtempSync(join(tmpdir(), 'forkd-agent-test-'));
  const socketPath = join(dir, 'agent.sock');
  const configPath = join(dir, 'runtime.json');
  if (opts.runtimeConfig) writeFileSync(configPath, JSON.stringify(opts.runtimeConfig));
  const proc = spawn(agentBinary, ['--listen', socketPath, '--runtime-config', configPath, '--no-clock'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // The agent's own stdout is where stray output of the runtime lands.
  let log = '';
  proc.stdout.on('data', (c: Buffer) => (log += c.toString()));
  proc.stderr.on('data', (c: Buffer) => (log += c.toString()));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  let client: AgentClient;
  try {
    client = await AgentClient.connect(socketPath, { retryUntilMs: 5000, timeoutMs: 10_000 });
  } catch (err) {
    proc.kill('SIGKILL');
    await exited;
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    client,
    dir,
    socketPath,
    proc,
    log: () => log,
    async stop() {
      await client.close();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
      if (existsSync(socketPath)) throw new Error('agent left its socket behind');
    },
  };
}

/** True while a process exists (zombies count as gone: they are dead). */
export function processAlive(pid: number): boolean {
  try {
    const stat = execFileSync('cat', [`/proc/${pid}/stat`], {
      stdio: ['ignore', 'pipe', 'ignore'],
    }).toString();
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** Polls `cond` until true or the timeout passes. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return cond();
}
