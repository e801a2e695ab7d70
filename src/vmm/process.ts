// One QEMU process: launch from a machine description, detect its exit, keep
// its stderr in a log file, and kill it on every path. The process runs in its
// own session so a daemon restart does not take it down; the in-process
// cleanup registry still kills it when its owner exits unless it is released.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';
import { VmExitedError } from '../errors.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import { onProcessExit } from '../util/cleanup.js';
import { launch } from '../util/launcher.js';
import { BWRAP_INFO_FD, confinedArgv, type ConfinementSpec } from './confine.js';
import { hostLayout, resolveProgram } from './host-layout.js';
import { buildQemuArgs, type MachineDescription } from './machine.js';

/** The fd on which a QEMU reads the device state it restores (`migrate-incoming fd:3`). */
export const STATE_IN_FD = 3;

export interface QemuExit {
  code: number | null;
  signal: string | null;
}

export interface LaunchQemuOptions extends CallOptions {
  /** QEMU's own stdout/stderr go here (error messages on failed starts). */
  logPath: string;
  /** Kill this process when the launching Node process exits (default true). */
  killOnExit?: boolean;
  /** The jail QEMU runs in; null only when the operator turned confinement off (FORKD_UNCONFINED=1). */
  confinement: ConfinementSpec | null;
  /**
   * Device state to restore, handed over as an open descriptor (STATE_IN_FD):
   * QEMU never spawns a shell for `exec:` migration and needs no access to
   * the path.
   */
  stateIn?: string | undefined;
}

export class QemuProcess {
  readonly pid: number;
  readonly exited: Promise<QemuExit>;
  private exitInfo: QemuExit | null = null;
  private unregister: () => void;

  /**
   * Either our own child (exit reported by the kernel) or a QEMU adopted from
   * an earlier forkd process (exit noticed by polling its /proc entry).
   */
  private constructor(
    private readonly child: ChildProcess | { pid: number; cmdlineMarker: string },
    readonly logPath: string,
    readonly consoleLogPath: string,
    killOnExit: boolean,
    /** QEMU's own pid: the launched process itself, or the program inside bwrap. */
    qemuPid?: number,
  ) {
    const pid = qemuPid ?? child.pid;
    if (pid === undefined) throw new Error('QEMU did not start');
    this.pid = pid;
    this.unregister = killOnExit ? onProcessExit(() => this.kill()) : () => true;
    const settle = (resolve: (e: QemuExit) => void, exit: QemuExit) => {
      this.exitInfo = exit;
      this.unregister();
      resolve(exit);
    };
    if ('cmdlineMarker' in child) {
      const { cmdlineMarker } = child;
      this.exited = new Promise((resolve) => {
        const timer = setInterval(() => {
          if (!isQemuAlive(this.pid, cmdlineMarker)) {
            clearInterval(timer);
            // Not our child: its status went to its parent (or init).
            settle(resolve, { code: null, signal: null });
          }
        }, ADOPTED_POLL_MS);
        timer.unref();
        this.pollTimer = timer;
      });
    } else {
      this.exited = new Promise((resolve) => {
        child.once('exit', (code, signal) =>
          settle(resolve, jailedExit(code, signal, qemuPid !== undefined)),
        );
      });
    }
  }

  private pollTimer: NodeJS.Timeout | undefined;

  /**
   * Take charge of a QEMU started by an earlier forkd process (a restarted
   * daemon, a later CLI command). `cmdlineMarker` (its run dir) guards
   * against a recycled pid.
   */
  static adopt(
    pid: number,
    opts: { cmdlineMarker: string; logPath: string; consoleLogPath: string; killOnExit?: boolean },
  ): QemuProcess {
    return new QemuProcess(
      { pid, cmdlineMarker: opts.cmdlineMarker },
      opts.logPath,
      opts.consoleLogPath,
      opts.killOnExit ?? true,
    );
  }

  static async launch(machine: MachineDescription, opts: LaunchQemuOptions): Promise<QemuProcess> {
    const qemuArgv = [resolveProgram(machine.qemuBinary), ...buildQemuArgs(machine)];
    const argv = opts.confinement ? confinedArgv(qemuArgv, opts.confinement, hostLayout()) : qemuArgv;
    const [program, ...args] = argv as [string, ...string[]];
    const fds: number[] = [];
    const open = (path: string | undefined, flags: string) => {
      if (path === undefined) return 'ignore' as const;
      const fd = openSync(path, flags, 0o644);
      fds.push(fd);
      return fd;
    };
    let child: ChildProcess;
    try {
      const logFd = open(opts.logPath, 'a');
      child = launch([program, ...args], {
        // Registered below, with the QEMU pid (the jail's own process would only orphan it).
        killOnExit: false,
        stdio: [
          'ignore',
          logFd,
          logFd,
          open(opts.stateIn, 'r'),
          'ignore',
          opts.confinement ? 'pipe' : 'ignore',
        ],
        env: opts.confinement ? {} : process.env,
        detached: true,
      });
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    child.unref();
    // A spawn failure (ENOENT) leaves pid undefined and emits 'error'; it is reported below.
    child.on('error', () => undefined);
    if (child.pid === undefined) {
      throw new VmExitedError(`could not start ${program}`, { code: null, signal: null }, '', {
        hint: `install ${program === 'bwrap' ? 'bubblewrap' : 'qemu-system-x86'} (scripts/setup.sh, forkd doctor)`,
      });
    }
    const killOnExit = opts.killOnExit ?? true;
    if (!opts.confinement) return new QemuProcess(child, opts.logPath, machine.paths.consoleLog, killOnExit);
    const info = (child.stdio as unknown as (Readable | null)[])[BWRAP_INFO_FD];
    if (!info) throw new Error('bwrap info pipe missing');
    try {
      const qemuPid = await confinedPid(child, info, opts);
      return new QemuProcess(child, opts.logPath, machine.paths.consoleLog, killOnExit, qemuPid);
    } catch (err) {
      child.kill('SIGKILL');
      const tail = await tailOf([opts.logPath], 5);
      throw new VmExitedError(
        `could not start QEMU in its jail: ${(err as Error).message}${tail ? `: ${tail.split('\n').pop()}` : ''}`,
        { code: child.exitCode, signal: child.signalCode },
        tail,
        {
          hint: 'forkd doctor checks bubblewrap and user namespaces; FORKD_UNCONFINED=1 runs QEMU unconfined',
        },
      );
    } finally {
      // Drained, never closed early: bwrap may still be writing its info
      // (a closed pipe would kill it with SIGPIPE); it closes the fd itself.
      info.on('data', () => undefined);
      info.on('error', () => undefined);
      info.resume();
    }
  }

  get hasExited(): boolean {
    return this.exitInfo !== null;
  }

  /** Stop tracking for exit-time cleanup: the caller hands the process to someone else (held sandboxes). */
  release(): void {
    this.unregister();
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo) return;
    try {
      process.kill(this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** Kill and wait until the kernel has reaped it. */
  async terminate(): Promise<QemuExit> {
    if ('ref' in this.child)
      this.child.ref(); // an unref'd child would let Node exit before 'exit' arrives
    else this.pollTimer?.ref();
    this.kill('SIGKILL');
    return this.exited;
  }

  /** The last lines QEMU and the guest console printed: attached to errors. */
  async logTail(lines = 15): Promise<string> {
    return tailOf([this.logPath, this.consoleLogPath], lines);
  }

  /** An error for "QEMU exited while we needed it", with its log tail. */
  async exitError(what: string): Promise<VmExitedError> {
    const exit = this.exitInfo ?? { code: null, signal: null };
    const tail = await this.logTail();
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    const lastLine = tail.trim().split('\n').pop() ?? '';
    return new VmExitedError(`${what}: QEMU exited (${how})${lastLine ? `: ${lastLine}` : ''}`, exit, tail);
  }
}

const ADOPTED_POLL_MS = 250;

/**
 * bwrap exits with 128+N when the program it runs was killed by signal N:
 * report QEMU's signal (a SIGBUS from a full disk, a SIGKILL) as such.
 */
export function jailedExit(code: number | null, signal: NodeJS.Signals | null, jailed: boolean): QemuExit {
  if (!jailed || signal !== null || code === null || code <= 128 || code >= 128 + 65) return { code, signal };
  const name = Object.entries(osConstants.signals).find(([, n]) => n === code - 128)?.[0];
  return name ? { code: null, signal: name } : { code, signal };
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
      if (text.length > 64 * 1024) return done(new Error('bwrap info is too long'));
      // The number must be followed by its delimiter: a chunk can end mid-number.
      const match = /"child-pid"\s*:\s*(\d+)\s*[,}]/.exec(text);
      if (match) done(null, Number(match[1]));
    };
    const onExit = (code: number | null, sig: string | null) =>
      done(new Error(`bwrap exited (${sig ? `signal ${sig}` : `code ${code}`})`));
    const onAbort = () => done(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    info.on('data', onData);
    child.once('exit', onExit);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Every QEMU whose command line contains `marker` (a run dir), however it was started. */
export function qemuPidsWith(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
    } catch {
      continue; // gone
    }
    const program = (cmdline.split('\0')[0] ?? '').split('/').pop() ?? '';
    if (program.startsWith('qemu-system') && cmdline.includes(marker)) pids.push(Number(name));
  }
  return pids;
}

/** Whether `pid` is alive and is the QEMU whose command line contains `marker`. */
export function isQemuAlive(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

export async function tailOf(paths: readonly string[], lines: number): Promise<string> {
  const parts: string[] = [];
  for (const path of paths) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    if (tail) parts.push(tail);
  }
  return parts.join('\n');
}
