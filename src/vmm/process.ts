// One QEMU process: launch from a machine description, detect its exit, keep
// its stderr in a log file, and kill it on every path. The process runs in its
// own session so a daemon restart does not take it down; the in-process
// cleanup registry still kills it when its owner exits unless it is released.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
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

  private constructor(
    private readonly child: ChildProcess,
    readonly logPath: string,
    readonly consoleLogPath: string,
    killOnExit: boolean,
  ) {
    if (child.pid === undefined) throw new Error('QEMU did not start');
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        this.unregister();
        resolve(this.exitInfo);
      });
    });
    this.unregister = killOnExit ? onProcessExit(() => this.kill()) : () => true;
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
    this.child.ref(); // an unref'd child would let Node exit before 'exit' arrives
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

export async function tailOf(paths: readonly string[], lines: number): Promise<string> {
  const parts: string[] = [];
  for (const path of paths) {
    const text = await readFile(path, 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-lines).join('\n');
    if (tail) parts.push(tail);
  }
  return parts.join('\n');
}
