// The one place forkd starts host programs. Every process started here is
// registered to be killed when forkd exits (SIGINT, SIGTERM, a crash)
// unless it is meant to outlive it (a detached sandbox's QEMU, which a later
// forkd re-attaches to), and is unregistered when it exits. Lint forbids
// node:child_process anywhere else.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { onProcessExit } from './cleanup.js';

export interface LaunchOptions {
  stdio: StdioOptions;
  env?: NodeJS.ProcessEnv | undefined;
  cwd?: string | undefined;
  /** Its own session: a daemon restart or a terminal's ^C does not reach it. */
  detached?: boolean;
  /**
   * Kill it when this process exits (default true). False only for what is
   * handed on (QEMU, whose own registration follows its sandbox's life).
   */
  killOnExit?: boolean;
}

/** Start `argv[0]` with `argv[1..]`; never through a shell. */
export function launch(argv: readonly string[], opts: LaunchOptions): ChildProcess {
  const [program, ...args] = argv;
  if (program === undefined) throw new Error('launch: empty argv');
  const child = spawn(program, args, {
    stdio: opts.stdio,
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    detached: opts.detached ?? false,
  });
  if (child.pid !== undefined && (opts.killOnExit ?? true)) {
    const forget = onProcessExit(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    child.once('exit', forget);
  }
  return child;
}
