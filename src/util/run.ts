// Run a host program (argv array, never a shell string), capture stdout and a
// bounded stderr tail, and turn failures into typed forkd errors: a missing
// program is a MissingDependencyError with an apt-get hint, a non-zero exit is
// a HostCommandError carrying the stderr tail.
import { launch } from './launcher.js';
import { ForkdError, MissingDependencyError, type ForkdErrorOptions } from '../errors.js';
import { abortReason, throwIfAborted } from './abort.js';

/** Debian package that provides each host program forkd's image builder runs. */
export const PROGRAM_PACKAGES: Readonly<Record<string, string>> = {
  'apt-cache': 'apt',
  'apt-get': 'apt',
  'dpkg-deb': 'dpkg',
  xz: 'xz-utils',
  depmod: 'kmod',
  debootstrap: 'debootstrap',
  mmdebstrap: 'mmdebstrap',
  'mkfs.ext4': 'e2fsprogs',
  debugfs: 'e2fsprogs',
  busybox: 'busybox-static',
  cp: 'coreutils',
  rm: 'coreutils',
  umount: 'mount',
  make: 'make',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-img': 'qemu-utils',
  zstd: 'zstd',
};

/** A host program exited non-zero (or was killed by a signal). */
export class HostCommandError extends ForkdError {
  constructor(
    message: string,
    readonly argv: readonly string[],
    readonly exitCode: number | null,
    readonly stderrTail: string,
    options?: ForkdErrorOptions,
  ) {
    super('internal', message, options);
  }
}

export interface RunOptions {
  signal?: AbortSignal | undefined;
  cwd?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Called with each complete line the program writes to stdout or stderr. */
  onLine?: ((line: string) => void) | undefined;
  /** Keep stdout in memory (default true); off for chatty programs. */
  captureStdout?: boolean | undefined;
  /** Bytes of stderr kept for the error message (default 4 KiB). */
  stderrTailBytes?: number | undefined;
  /** Written to the program's stdin (which is otherwise empty). */
  input?: string | undefined;
}

export interface RunResult {
  stdout: string;
  /** The same output as raw bytes (for binary output). */
  stdoutBytes: Buffer;
  stderrTail: string;
}

export function missingProgram(program: string): MissingDependencyError {
  const pkg = PROGRAM_PACKAGES[program] ?? program;
  return new MissingDependencyError(`host program '${program}' not found`, program, {
    hint: `install it with: apt-get install -y ${pkg} (or run scripts/setup.sh)`,
  });
}

/** The error for a program that exited non-zero: how it ended and the last lines it wrote to stderr. */
export function exitFailure(
  argv: readonly string[],
  code: number | null,
  signal: NodeJS.Signals | null,
  stderrTail: string,
  tailLines = 5,
): HostCommandError {
  const how = signal ? `was killed by ${signal}` : `exited with status ${code}`;
  const tail = stderrTail.trim().split('\n').slice(-tailLines).join(' | ');
  return new HostCommandError(`${argv[0]} ${how}${tail ? `: ${tail}` : ''}`, argv, code, stderrTail);
}

/** Run argv[0] with argv[1..]; resolves with its output, rejects with a typed error. */
export async function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const program = argv[0];
  if (program === undefined) throw new Error('run: empty argv');
  throwIfAborted(opts.signal);
  const tailMax = opts.stderrTailBytes ?? 4096;
  const capture = opts.captureStdout ?? true;
  return await new Promise((resolve, reject) => {
    const child = launch(argv, {
      cwd: opts.cwd,
      env: opts.env,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    child.stdin?.on('error', () => undefined); // a program that exits early closes its stdin
    child.stdin?.end(opts.input);
    const stdoutChunks: Buffer[] = [];
    let stderrTail = '';
    const partial = { out: '', err: '' };
    const emitLines = (which: 'out' | 'err', text: string) => {
      if (!opts.onLine) return;
      const lines = (partial[which] + text).split('\n');
      partial[which] = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') opts.onLine(line);
    };
    child.stdout?.on('data', (chunk: Buffer) => {
      if (capture) stdoutChunks.push(chunk);
      emitLines('out', chunk.toString('utf8'));
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      stderrTail = (stderrTail + text).slice(-tailMax);
      emitLines('err', text);
    });
    const onAbort = () => child.kill('SIGTERM');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (err: NodeJS.ErrnoException) => {
      opts.signal?.removeEventListener('abort', onAbort);
      reject(err.code === 'ENOENT' ? missingProgram(program) : err);
    });
    child.on('close', (code, signal) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (opts.signal?.aborted) return reject(abortReason(opts.signal));
      const stdoutBytes = Buffer.concat(stdoutChunks);
      if (code === 0) return resolve({ stdout: stdoutBytes.toString('utf8'), stdoutBytes, stderrTail });
      reject(exitFailure(argv, code, signal, stderrTail));
    });
  });
}
