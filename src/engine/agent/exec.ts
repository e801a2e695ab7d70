// One EXEC on the agent: builds the request, collects streamed output, and
// exposes the running process as an ExecHandle (stdin, kill, wait). An abort
// (signal or timeoutMs) rejects wait() and also KILLs the guest process
// group, so an abandoned call never leaves a process running in the guest.
import { constants } from 'node:os';
import { AgentError, InvalidArgumentError } from '../../errors.js';
import { abortReason, deadlineSignal, type CallOptions } from '../../util/abort.js';
import { agentErrorFromHead, exitFromHead } from './heads.js';
import { callSite, withCallSite, type AgentTransport } from './pending.js';
import { Field, MAX_REQUEST_BODY, RequestType, ResponseType, type FieldValue } from './protocol.js';
import type { ExecHandle, ExecHandlers, ExecRequest, ExecResult } from './types.js';

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
  return fields;
}

/** A running exec; created by AgentClient.startExec. */
export class ExecRun implements ExecHandle {
  readonly id: number;
  private readonly stdout: Buffer[] = [];
  private readonly stderr: Buffer[] = [];
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
      if (type === ResponseType.STDOUT) {
        this.stdout.push(body);
        this.handlers.onStdout?.(body);
      } else if (type === ResponseType.STDERR) {
        this.stderr.push(body);
        this.handlers.onStderr?.(body);
      } else if (type === ResponseType.EXIT) {
        const exit = exitFromHead(head);
        this.finish(null, {
          ...exit,
          stdout: Buffer.concat(this.stdout),
          stderr: Buffer.concat(this.stderr),
        });
      } else if (type === ResponseType.ERROR) {
        this.finish(agentErrorFromHead(head));
      }
    } catch (err) {
      // A throwing output handler ends the exec rather than the socket reader.
      this.onHandlerError(err as Error);
    }
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
