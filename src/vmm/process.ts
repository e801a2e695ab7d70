// One QEMU process: launch from a machine description, detect its exit, keep
// its stderr in a log file, and kill it on every path. The process runs in its
// own session so a daemon restart does not take it down; the in-process
// cleanup registry still kills it when its owner exits unless it is released.
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { ForkdError, VmExitedError } from '../errors.js';
import type { CallOptions } from '../util/abort.js';
import { onProcessExit } from '../util/cleanup.js';
import type { ConfinementSpec } from './confine.js';
import { resolveProgram } from './host-layout.js';
import { launchJailed, type JailedProcess } from './jailed.js';
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
    if (pid === undefined) throw new VmExitedError('QEMU did not start', { code: null, signal: null }, '');
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
    const command = [resolveProgram(machine.qemuBinary), ...buildQemuArgs(machine)];
    const fds: number[] = [];
    const open = (path: string | undefined, flags: string) => {
      if (path === undefined) return 'ignore' as const;
      const fd = openSync(path, flags, 0o644);
      fds.push(fd);
      return fd;
    };
    let started: JailedProcess;
    try {
      const logFd = open(opts.logPath, 'a');
      started = await launchJailed(command, opts.confinement, {
        stdio: ['ignore', logFd, logFd, open(opts.stateIn, 'r'), 'ignore'],
        signal: opts.signal,
        timeoutMs: opts.timeoutMs,
      });
    } catch (err) {
      // A caller's abort or deadline is theirs to see as such, not as QEMU failing.
      if (err instanceof ForkdError && (err.code === 'aborted' || err.code === 'timeout')) throw err;
      const tail = await tailOf([opts.logPath], 5);
      throw new VmExitedError(
        `could not start QEMU${opts.confinement ? ' in its jail' : ''}: ${(err as Error).message}${tail ? `: ${tail.split('\n').pop()}` : ''}`,
        { code: null, signal: null },
        tail,
        {
          hint: opts.confinement
            ? 'forkd doctor checks bubblewrap and QEMU; FORKD_UNCONFINED=1 runs QEMU unconfined'
            : 'install qemu-system-x86 (forkd doctor)',
        },
      );
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    const { child, pid } = started;
    child.unref();
    const killOnExit = opts.killOnExit ?? true;
    return new QemuProcess(
      child,
      opts.logPath,
      machine.paths.consoleLog,
      killOnExit,
      opts.confinement ? pid : undefined,
    );
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
    const lines = tail.trim().split('\n');
    // A guest that panicked ends with "Kernel Offset: disabled"; the panic's own line says why.
    const said = lines.find((l) => /Kernel panic - not syncing|BUG:|Oops:|general protection fault/.test(l));
    const lastLine = said?.trim() ?? lines.pop() ?? '';
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

/** Resolve with `work`, or reject with QEMU's exit error if it exits first. */
export async function unlessExited<T>(proc: QemuProcess, what: string, work: Promise<T>): Promise<T> {
  const exited = proc.exited.then(async () => {
    throw await proc.exitError(what);
  });
  exited.catch(() => undefined);
  return Promise.race([work, exited]);
}
