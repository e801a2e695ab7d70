// Public shapes of the agent client API: what callers pass in and get back.
// Wire names (snake_case) stay in client.ts; these are camelCase.

/** A command to run in the guest: `args` (exec'd directly, PATH-searched) or `shell` (`/bin/sh -c`). */
export interface ExecRequest {
  args?: string[];
  shell?: string;
  /** Added to the guest's clean env (PATH, HOME, FORKD_VARY when set). */
  env?: Record<string, string>;
  cwd?: string;
  /** Written to the process's stdin, which is then closed unless `stdinOpen`. */
  stdin?: Buffer | string;
  /** Keep stdin open for `ExecHandle.writeStdin` (close it with `closeStdin`). */
  stdinOpen?: boolean;
  /** Guest-side limit: the process group is SIGKILLed and `timedOut` is set. 0 or absent: none. */
  timeoutMs?: number;
  /**
   * Output kept for the result (stdout and stderr together; default
   * DEFAULT_MAX_OUTPUT_BYTES). Past it the process group is SIGKILLed and the
   * result says `truncated`.
   */
  maxOutputBytes?: number;
  /** Keep output for the result (default true); false when the caller only streams it. */
  collectOutput?: boolean;
}

/** Streaming callbacks for an exec's output, called as chunks arrive. */
export interface ExecHandlers {
  onStdout?(chunk: Buffer): void;
  onStderr?(chunk: Buffer): void;
  /**
   * The caller acknowledges output itself with `ExecHandle.ack` once it has
   * passed it on; until then the guest holds the process's output back (and
   * the process blocks on a full pipe). Default: acknowledged on arrival.
   */
  manualAck?: boolean;
}

/** How a guest process ended, with all of its output. */
export interface ExecResult {
  /** Exit status, or 128 + signal number when killed by a signal. */
  exitCode: number;
  /** Signal name (e.g. "SIGKILL") when killed by a signal, else null. */
  signal: string | null;
  timedOut: boolean;
  /** The output passed maxOutputBytes: what is kept is its start, and the process was killed. */
  truncated: boolean;
  stdout: Buffer;
  stderr: Buffer;
}

/** A running exec started with `AgentClient.startExec`. */
export interface ExecHandle {
  readonly id: number;
  /** Sends bytes to the process's stdin (needs `stdinOpen: true`). */
  writeStdin(data: Buffer | string): void;
  /** Closes the process's stdin. */
  closeStdin(): void;
  /** Signals the process group (default SIGKILL). */
  kill(signal?: NodeJS.Signals | number): void;
  /** With `manualAck`: `bytes` of output were passed on, the guest may send that much more. */
  ack(bytes: number): void;
  /** Resolves when the process has exited and its output is drained. */
  wait(): Promise<ExecResult>;
}

/** Outcome of an EVAL in the warm runtime. */
export interface EvalResult {
  /** The value of the last expression as JSON, or null when it is not JSON-serialisable. */
  result: unknown;
  /** repr() of the value of the last expression; null when the code ended in a statement. */
  repr: string | null;
  /** Traceback text when the code raised, else null. */
  error: string | null;
  /** 0 on success, 1 when the code raised. */
  exitCode: number;
  /** What the code printed to stdout, when anything. */
  stdout?: string;
  /** What the code printed to stderr, when anything. */
  stderr?: string;
}

/** State of the warm eval runtime as PING reports it. */
export interface RuntimeStatus {
  kind: string;
  state: 'starting' | 'ready' | 'failed';
  ready: boolean;
  error?: string;
}

/** PING answer. */
export interface PingResult {
  /** Protocol version. */
  version: number;
  /** Agent build version. */
  agent: string;
  /** null when the image has no eval runtime. */
  runtime: RuntimeStatus | null;
  uptimeMs: number;
  pid: number;
}

/** Post-restore hygiene: the host's time, fresh entropy, and this child's vary value. */
export interface HygieneRequest {
  timeUnixNs: bigint;
  entropy: Buffer;
  /** Exported to later execs as FORKD_VARY; a new value replaces the old variant whole. */
  vary?: string;
  /** With `vary`: the variant's variables, added to later execs' environment. */
  varyEnv?: Record<string, string>;
}

/** What the hygiene request changed. */
export interface HygieneResult {
  /** False when the agent may not set the clock (not init, or --no-clock). */
  clockSet: boolean;
  /** False when the entropy was mixed in but not credited (unprivileged agent). */
  entropyCredited: boolean;
}

export type FileType = 'file' | 'dir' | 'symlink' | 'other';

/** A file's metadata (of the link itself for symlinks). */
export interface FileInfo {
  name: string;
  type: FileType;
  size: number;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  mtimeMs: number;
}

export interface WriteFileOptions {
  /** Permission bits (default 0o644 for new files; when given, also applied to existing ones). */
  mode?: number;
  append?: boolean;
  /** Create missing parent directories. */
  parents?: boolean;
}

export interface MkdirOptions {
  parents?: boolean;
  /** Permission bits, default 0o755. */
  mode?: number;
}

export interface RemoveOptions {
  recursive?: boolean;
}
