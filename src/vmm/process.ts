// One QEMU process: launch from a machine description, detect its exit, keep
// its stderr in a log file, and kill it on every path. The process runs in its
// own session so a daemon restart does not take it down; the in-process
// cleanup registry still kills it when its owner exits unless it is released.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { VmExitedError } from '../errors.js';
import { onProcessExit } from '../util/cleanup.js';
import { buildQemuArgs, type MachineDescription } from './machine.js';

export interface QemuExit {
  code: number | null;
  signal: string | null;
}

export interface LaunchQemuOptions {
  /** QEMU's own stdout/stderr go here (error messages on failed starts). */
  logPath: string;
  /** Kill this process when the launching Node process exits (default true). */
  killOnExit?: boolean;
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
  ) {
    if (child.pid === undefined) throw new Error('QEMU did not start');
    this.pid = child.pid;
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
        child.once('exit', (code, signal) => settle(resolve, { code, signal }));
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

  static launch(machine: MachineDescription, opts: LaunchQemuOptions): QemuProcess {
    const logFd = openSync(opts.logPath, 'a');
    try {
      const child = spawn(machine.qemuBinary, buildQemuArgs(machine), {
        stdio: ['ignore', logFd, logFd],
        detached: true,
      });
      child.unref();
      // A spawn failure (ENOENT) leaves pid undefined and emits 'error'; it is reported below.
      child.on('error', () => undefined);
      if (child.pid === undefined) {
        throw new VmExitedError(`could not start ${machine.qemuBinary}`, { code: null, signal: null }, '', {
          hint: 'install qemu-system-x86 (forkd doctor)',
        });
      }
      return new QemuProcess(child, opts.logPath, machine.paths.consoleLog, opts.killOnExit ?? true);
    } finally {
      closeSync(logFd);
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
