// Starting a program inside its jail (confine.ts) through the one launcher,
// and learning the program's own pid from bwrap's info fd: that pid, not
// bwrap's, is the one to signal, record and put in cgroups. Unconfined
// (FORKD_UNCONFINED=1), the program is started directly.
import type { ChildProcess, StdioNull, StdioPipe } from 'node:child_process';
import type { Readable } from 'node:stream';
import { AbortedError, ForkdError, MissingDependencyError, VmExitedError } from '../errors.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import { launch } from '../util/launcher.js';
import { BWRAP_INFO_FD, confinedArgv, type ConfinementSpec } from './confine.js';
import { hostLayout } from './host-layout.js';

type Stdio = StdioNull | StdioPipe | number;

export interface JailedProcess {
  /** The process forkd started (bwrap, or the program itself unconfined): its exit is the program's. */
  child: ChildProcess;
  /** The program's own host pid. */
  pid: number;
}

export interface LaunchJailedOptions extends CallOptions {
  /** fds 0-4 of the program (the jail passes inherited fds through). */
  stdio: [Stdio, Stdio, Stdio, Stdio, Stdio];
  /** Its own session, so it outlives this process (default true). */
  detached?: boolean;
}

export async function launchJailed(
  command: readonly string[],
  spec: ConfinementSpec | null,
  opts: LaunchJailedOptions,
): Promise<JailedProcess> {
  const argv = spec ? confinedArgv(command, spec, hostLayout()) : [...command];
  const child = launch(argv, {
    // The caller registers the program's pid for exit-time cleanup: killing the
    // jail's own process would only orphan the program.
    killOnExit: false,
    stdio: [...opts.stdio, spec ? 'pipe' : 'ignore'],
    env: spec ? {} : process.env,
    detached: opts.detached ?? true,
  });
  // A spawn failure (ENOENT) leaves pid undefined and emits 'error'.
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  if (child.pid === undefined) {
    const err = await Promise.race([
      spawnError,
      new Promise<Error>((r) => setImmediate(() => r(new Error('no pid')))),
    ]);
    const program = argv[0] ?? '';
    throw new MissingDependencyError(`${program} could not be started (${err.message})`, program, {
      cause: err,
    });
  }
  child.on('error', () => undefined);
  if (!spec) return { child, pid: child.pid };
  const info = (child.stdio as unknown as (Readable | null)[])[BWRAP_INFO_FD];
  if (!info) throw new ForkdError('internal', 'bwrap info pipe missing');
  try {
    return { child, pid: await confinedPid(child, info, opts) };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    // Drained, never closed early: bwrap may still be writing its info
    // (a closed pipe would kill it with SIGPIPE); it closes the fd itself.
    info.on('data', () => undefined);
    info.on('error', () => undefined);
    info.resume();
  }
}

/** The confined program's host pid, from bwrap's info fd (JSON with `child-pid`). */
function confinedPid(child: ChildProcess, info: Readable, opts: CallOptions): Promise<number> {
  const signal = deadlineSignal(
    { timeoutMs: opts.timeoutMs ?? 10_000, signal: opts.signal },
    'starting bwrap',
  );
  return new Promise((resolve, reject) => {
    let text = '';
    const done = (err: Error | null, pid?: number) => {
      info.off('data', onData);
      child.off('exit', onExit);
      signal.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(pid as number);
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString('utf8');
      if (text.length > 64 * 1024) return done(new ForkdError('internal', 'bwrap info is too long'));
      // The number must be followed by its delimiter: a chunk can end mid-number.
      const match = /"child-pid"\s*:\s*(\d+)\s*[,}]/.exec(text);
      if (match) done(null, Number(match[1]));
    };
    const onExit = (code: number | null, sig: string | null) =>
      // The jail ended before its program started: the program never ran.
      done(
        new VmExitedError(
          `bwrap exited (${sig ? `signal ${sig}` : `code ${code}`})`,
          { code, signal: sig },
          '',
        ),
      );
    const onAbort = () => done(signal.reason instanceof Error ? signal.reason : new AbortedError());
    info.on('data', onData);
    child.once('exit', onExit);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
