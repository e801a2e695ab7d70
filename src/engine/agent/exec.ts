// One EXEC on the agent: builds the request, collects streamed output, and
// exposes the running process as an ExecHandle (stdin, kill, wait). An abort
// (signal or timeoutMs) rejects wait() and also KILLs the guest process
// group, so an abandoned call never leaves a process running in the guest.
// Every byte the guest sends is bounded: output kept for the result stops at
// maxOutputBytes (the process is killed), and the agent may only run
// OUTPUT_WINDOW bytes ahead of what this side has acknowledged.
import { constants } from 'node:os';
import { AgentError, InvalidArgumentError } from '../../errors.js';
import { abortReason, deadlineSignal, type CallOptions } from '../../util/abort.js';
import { agentErrorFromHead, exitFromHead } from './heads.js';
import { callSite, withCallSite, type AgentTransport } from './pending.js';
import { Field, MAX_REQUEST_BODY, RequestType, ResponseType, type FieldValue } from './protocol.js';
import type { ExecHandle, ExecHandlers, ExecRequest, ExecResult } from './types.js';

/** Output kept for an exec's result unless the caller asks otherwise. */
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;
/** Output the agent may send before it waits for an acknowledgement. */
export const OUTPUT_WINDOW = 1024 * 1024;
/** How long a command killed for its output has to confirm its exit before the result is given anyway. */
const KILLED_EXIT_GRACE_MS = 5_000;

function toBuffer(data: Buffer | string): Buffer {
  return typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
}

function* chunks(data: Buffer): Generator<Buffer> {
  for (let off = 0; off < data.length; off += MAX_REQUEST_BODY) {
    yield data.subarray(off, off + MAX_REQUEST_BODY);
  }
}

function signalNumber(signal: NodeJS.Signals | number): number {
  const n = typeof signal === 'number' ? signal : constants.signals[signal];
  if (n === undefined || !Number.isInteger(n) || n < 1 || n > 64) {
    throw new InvalidArgumentError(`unknown signal ${String(signal)}`, 'signal');
  }
  return n;
}

/** Validates the request and encodes its fields (stdin beyond one frame is sent separately). */
function execFields(req: ExecRequest, stdin: Buffer): Array<[Field, FieldValue]> {
  const fields: Array<[Field, FieldValue]> = [];
  if ((req.args === undefined) === (req.shell === undefined)) {
    throw new InvalidArgumentError('exec needs exactly one of args or shell', 'args');
  }
  if (req.args) {
    if (req.args.length === 0) throw new InvalidArgumentError('exec args must not be empty', 'args');
    for (const a of req.args) fields.push([Field.ARG, a]);
  }
  if (req.shell !== undefined) fields.push([Field.SHELL, req.shell]);
  for (const [k, v] of Object.entries(req.env ?? {})) {
    if (!k || k.includes('=')) throw new InvalidArgumentError(`bad environment variable name ${k}`, 'env');
    fields.push([Field.ENV, `${k}=${v}`]);
  }
  if (req.cwd !== undefined) fields.push([Field.CWD, req.cwd]);
  if (req.timeoutMs !== undefined && req.timeoutMs > 0)
    fields.push([Field.TIMEOUT_MS, Math.ceil(req.timeoutMs)]);
  const inline = stdin.length <= MAX_REQUEST_BODY;
  if (stdin.length > 0 && inline) fields.push([Field.STDIN, stdin]);
  if (req.stdinOpen || !inline) fields.push([Field.STDIN_OPEN, '1']);
  fields.push([Field.WINDOW, OUTPUT_WINDOW]);
  return fields;
}

function outputCap(req: ExecRequest): number {
  const cap = req.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES;
  if (!Number.isSafeInteger(cap) || cap < 0)
    throw new InvalidArgumentError(
      `maxOutputBytes must be a non-negative integer, got ${cap}`,
      'maxOutputBytes',
    );
  return cap;
}

/** A running exec; created by AgentClient.startExec. */
export class ExecRun implements ExecHandle {
  readonly id: number;
  private readonly stdout: Buffer[] = [];
  private readonly stderr: Buffer[] = [];
  private kept = 0;
  private truncated = false;
  private readonly maxOutput: number;
  private readonly collect: boolean;
  /** Output passed on but not yet acknowledged to the agent. */
  private unacked = 0;
  /** Output received, and acknowledged to the agent: the agent may only be a window apart. */
  private received = 0;
  private credited = 0;
  private readonly result: Promise<ExecResult>;
  private settle!: { resolve(r: ExecResult): void; reject(e: Error): void };
  private done = false;
  private readonly site = callSite();
  private readonly signal: AbortSignal;

  constructor(
    private readonly transport: AgentTransport,
    req: ExecRequest,
    private readonly handlers: ExecHandlers,
    opts: CallOptions,
  ) {
    const stdin = toBuffer(req.stdin ?? Buffer.alloc(0));
    const fields = execFields(req, stdin);
    this.maxOutput = outputCap(req);
    this.collect = req.collectOutput ?? true;
    this.result = new Promise<ExecResult>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // wait() may never be called when the caller only streams; do not let
    // an unobserved failure become an unhandled rejection.
    this.result.catch(() => undefined);
    this.signal = deadlineSignal(opts, 'exec');
    this.id = transport.register({
      onFrame: (type, head, body) => this.onFrame(type, head, body),
      fail: (err) => this.finish(err),
    });
    try {
      if (this.signal.aborted) throw abortReason(this.signal);
      transport.send(this.id, RequestType.EXEC, fields);
      if (stdin.length > MAX_REQUEST_BODY) {
        for (const c of chunks(stdin)) this.sendStdin(c);
        if (!req.stdinOpen) this.closeStdin();
      }
    } catch (err) {
      this.finish(err as Error);
      return;
    }
    this.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  writeStdin(data: Buffer | string): void {
    for (const c of chunks(toBuffer(data))) this.sendStdin(c);
  }

  closeStdin(): void {
    if (!this.done && !this.transport.closed)
      this.transport.send(this.id, RequestType.STDIN, [[Field.DATA, '']]);
  }

  kill(signal: NodeJS.Signals | number = 'SIGKILL'): void {
    const n = signalNumber(signal);
    if (!this.done && !this.transport.closed)
      this.transport.send(this.id, RequestType.KILL, [[Field.SIGNAL, n]]);
  }

  wait(): Promise<ExecResult> {
    return this.result;
  }

  ack(bytes: number): void {
    this.unacked += bytes;
    // Batched: one CREDIT per quarter window, not one per chunk.
    if (this.unacked < OUTPUT_WINDOW / 4 || this.done || this.transport.closed) return;
    this.transport.credit(this.id, this.unacked);
    this.credited += this.unacked;
    this.unacked = 0;
  }

  private sendStdin(chunk: Buffer): void {
    // Empty DATA means "close stdin" on the wire, so empty writes are no-ops.
    if (chunk.length && !this.done && !this.transport.closed) {
      this.transport.send(this.id, RequestType.STDIN, [[Field.DATA, chunk]]);
    }
  }

  private readonly onAbort = (): void => {
    if (this.done) return;
    try {
      this.kill('SIGKILL');
    } catch {
      // channel already gone: nothing left to kill through
    }
    this.finish(abortReason(this.signal));
  };

  private onFrame(type: number, head: Record<string, unknown>, body: Buffer): void {
    try {
      if (type === ResponseType.STDOUT || type === ResponseType.STDERR) {
        this.received += body.length;
        // The agent may only run a window ahead of what was acknowledged. One
        // that does not (a hostile guest, or an agent older than protocol 2
        // whose reader is slow) loses the command, not the host's memory:
        // later frames for this id are dropped on arrival.
        if (this.received - this.credited > 2 * OUTPUT_WINDOW) {
          this.onHandlerError(
            new AgentError(
              'the command was stopped: its output ran past the flow-control window while its reader was behind',
            ),
          );
          return;
        }
        const out = type === ResponseType.STDOUT;
        this.keep(out ? this.stdout : this.stderr, body);
        if (out) this.handlers.onStdout?.(body);
        else this.handlers.onStderr?.(body);
        if (!this.handlers.manualAck) this.ack(body.length);
      } else if (type === ResponseType.EXIT) {
        const exit = exitFromHead(head);
        this.finish(null, { ...exit, ...this.output() });
      } else if (type === ResponseType.ERROR) {
        this.finish(agentErrorFromHead(head));
      }
    } catch (err) {
      // A throwing output handler ends the exec rather than the socket reader.
      this.onHandlerError(err as Error);
    }
  }

  /** Keeps output for the result up to maxOutput; past it the process is killed. */
  private keep(into: Buffer[], body: Buffer): void {
    if (!this.collect || this.truncated) return;
    const room = this.maxOutput - this.kept;
    if (body.length <= room) {
      into.push(body);
      this.kept += body.length;
      return;
    }
    if (room > 0) into.push(body.subarray(0, room));
    this.kept = this.maxOutput;
    this.truncated = true;
    this.kill('SIGKILL');
    // A guest that ignores the kill still gets its caller an answer.
    setTimeout(() => {
      if (this.done) return; // the exit came in time; no second copy of the output
      const killed = { exitCode: 128 + constants.signals.SIGKILL, signal: 'SIGKILL', timedOut: false };
      this.finish(null, { ...killed, ...this.output() });
    }, KILLED_EXIT_GRACE_MS).unref();
  }

  private output(): Pick<ExecResult, 'truncated' | 'stdout' | 'stderr'> {
    return {
      truncated: this.truncated,
      stdout: Buffer.concat(this.stdout),
      stderr: Buffer.concat(this.stderr),
    };
  }

  private onHandlerError(err: Error): void {
    try {
      this.kill('SIGKILL');
    } catch {
      // channel gone
    }
    this.finish(err);
  }

  private finish(err: Error | null, result?: ExecResult): void {
    if (this.done) return;
    this.done = true;
    this.signal.removeEventListener('abort', this.onAbort);
    this.transport.unregister(this.id);
    // Only our own errors get the caller's stack; an abort reason belongs to
    // whoever aborted.
    if (err) this.settle.reject(err instanceof AgentError ? withCallSite(err, this.site) : err);
    else this.settle.resolve(result!);
  }
}
