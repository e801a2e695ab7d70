// Host-side client of forkd-agent over one unix socket (QEMU's chardev socket
// for a VM, or `forkd-agent --listen` in tests). Requests are multiplexed by
// id: a pending map routes each response frame to its call, an aborted call
// is forgotten (late frames for it are ignored), and when the socket closes
// every pending call rejects with AgentError('agent channel closed').
// The guest writes every byte this reads: bytes that are not the protocol
// (an impossible frame, a reply that is not JSON) fail the calls in flight
// with the reason, mark the channel unhealthy and reconnect; a guest that
// keeps doing it is given up on, and every later call says why.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { AgentError, AgentUnavailableError, TooLargeError } from '../../errors.js';
import { abortReason, deadlineSignal, sleep, type CallOptions } from '../../util/abort.js';
import { connectUnix } from '../../util/unix-socket.js';
import { ExecRun } from './exec.js';
import {
  agentErrorFromHead,
  evalFromHead,
  fileInfoFromHead,
  hygieneFromHead,
  listFromHead,
  pingFromHead,
  readSliceFromHead,
} from './heads.js';
import { callSite, withCallSite, type AgentTransport, type FrameSink } from './pending.js';
import {
  decodeResponsePayload,
  encodeRequest,
  Field,
  FrameDecoder,
  MAX_READ_SLICE,
  MAX_REQUEST_BODY,
  RequestType,
  ResponseType,
  type FieldList,
  type FieldValue,
} from './protocol.js';
import type {
  EvalResult,
  ExecHandle,
  ExecHandlers,
  ExecRequest,
  ExecResult,
  FileInfo,
  HygieneRequest,
  HygieneResult,
  MkdirOptions,
  PingResult,
  RemoveOptions,
  WriteFileOptions,
} from './types.js';

/** Options for AgentClient.connect. */
export interface ConnectOptions extends CallOptions {
  /** Keep retrying a missing or refusing socket for this many ms (QEMU may still be creating it). Default 0. */
  retryUntilMs?: number;
}

type Head = Record<string, unknown>;

/** Bytes `readFile` returns at most unless told otherwise. */
export const DEFAULT_MAX_READ_BYTES = 64 * 1024 * 1024;

export interface ReadFileOptions extends CallOptions {
  /** Refuse files larger than this (TooLargeError). */
  maxBytes?: number;
}
type CloseListener = (err: Error | undefined) => void;

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

function mode(m: number): string {
  if (!Number.isInteger(m) || m < 0 || m > 0o7777) throw new AgentError(`bad file mode ${m}`);
  return m.toString(8);
}

/** How far the channel to a guest agent can be trusted. */
export interface AgentHealth {
  /** False from a protocol violation until the agent answers properly again. */
  healthy: boolean;
  /** The last protocol violation, if any. */
  reason: string | null;
  /** Protocol violations so far (each one cost a reconnect). */
  channelErrors: number;
  /** The channel is closed for good (given up, or the VM went away). */
  broken: boolean;
}

/** Protocol violations after which the channel is given up for good. */
export const MAX_CHANNEL_ERRORS = 3;
/** Deadline of a call that names none (exec has its own). */
export const DEFAULT_CALL_TIMEOUT_MS = 60_000;

/** A connection to one guest agent. */
export class AgentClient implements AgentTransport {
  private readonly pending = new Map<number, FrameSink>();
  private decoder = new FrameDecoder();
  private readonly closeListeners = new Set<CloseListener>();
  /**
   * Ids start at a random point: a virtio port outlives host connections, so
   * a reply to a request of a previous connection (a restarted daemon) can
   * still arrive and must not match one of ours.
   */
  private nextId = randomInt(1, 2 ** 31);
  private closeError: Error | undefined;
  private isClosed = false;
  private socket: net.Socket;
  private socketClosed: Promise<void>;
  /** Set while a broken channel is being replaced. */
  private reconnecting: Promise<void> | null = null;
  private healthState: Omit<AgentHealth, 'broken'> = { healthy: true, reason: null, channelErrors: 0 };

  private constructor(
    private readonly path: string,
    socket: net.Socket,
  ) {
    this.socket = socket;
    this.socketClosed = this.attach(socket);
  }

  /** Connects to the agent's socket, retrying while it does not exist yet (see retryUntilMs). */
  static async connect(socketPath: string, opts: ConnectOptions = {}): Promise<AgentClient> {
    const signal = deadlineSignal(opts, `connecting to the agent at ${socketPath}`);
    const until = Date.now() + (opts.retryUntilMs ?? 0);
    for (;;) {
      try {
        return new AgentClient(socketPath, await connectUnix(socketPath, signal));
      } catch (err) {
        if (signal.aborted) throw abortReason(signal);
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (!RETRYABLE.has(code) || Date.now() >= until) {
          throw new AgentError(
            `cannot connect to the agent at ${socketPath}: ${(err as Error).message}`,
            undefined,
            {
              cause: err,
            },
          );
        }
        await sleep(20, signal);
      }
    }
  }

  /** True once the socket has closed for good; every later call rejects. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Whether the guest has kept to the protocol. */
  get health(): AgentHealth {
    const broken = this.isClosed;
    return { ...this.healthState, healthy: this.healthState.healthy && !broken, broken };
  }

  /** Calls `listener` once when the channel closes (with the socket error, if any); returns an unsubscribe. */
  onClose(listener: CloseListener): () => void {
    if (this.isClosed) {
      queueMicrotask(() => listener(this.closeError));
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Closes the connection; pending calls reject with AgentError('agent channel closed'). */
  async close(): Promise<void> {
    if (!this.isClosed) {
      this.socket.destroy();
      this.finalClose();
    }
    await this.socketClosed;
  }

  /** Liveness and the warm runtime's state. */
  async ping(opts?: CallOptions): Promise<PingResult> {
    return pingFromHead((await this.call(RequestType.PING, [], opts, 'ping')).head);
  }

  /** Post-restore hygiene: set the clock, credit entropy, store the vary value. */
  async hygiene(req: HygieneRequest, opts?: CallOptions): Promise<HygieneResult> {
    const fields: Array<[Field, FieldValue]> = [
      [Field.TIME_NS, req.timeUnixNs],
      [Field.ENTROPY, req.entropy],
    ];
    if (req.vary !== undefined) {
      fields.push([Field.VARY, req.vary]);
      for (const [k, v] of Object.entries(req.varyEnv ?? {})) fields.push([Field.ENV, `${k}=${v}`]);
    }
    return hygieneFromHead((await this.call(RequestType.HYGIENE, fields, opts, 'hygiene')).head);
  }

  /** Runs a command to completion; a non-zero exit is a result, not an error. */
  async exec(req: ExecRequest, handlers: ExecHandlers = {}, opts: CallOptions = {}): Promise<ExecResult> {
    await Promise.resolve();
    return this.startExec(req, handlers, opts).wait();
  }

  /** Starts a command and returns a handle for stdin, kill and wait. Throws if the channel is closed. */
  startExec(req: ExecRequest, handlers: ExecHandlers = {}, opts: CallOptions = {}): ExecHandle {
    return new ExecRun(this, req, handlers, opts);
  }

  /** Evaluates code in the warm runtime; errors in the code are a result (`error`, exitCode 1). */
  async eval(code: string, opts?: CallOptions): Promise<EvalResult> {
    return evalFromHead((await this.call(RequestType.EVAL, [[Field.CODE, code]], opts, 'eval')).head);
  }

  /**
   * Reads a whole file, in slices when it is larger than one frame, up to
   * `maxBytes` (default DEFAULT_MAX_READ_BYTES) and within the call's
   * deadline (default 60 s): /dev/zero, or an agent that keeps answering,
   * ends in an error instead of a host that keeps asking.
   */
  async readFile(path: string, opts: ReadFileOptions = {}): Promise<Buffer> {
    const maxBytes = opts.maxBytes ?? DEFAULT_MAX_READ_BYTES;
    const signal = deadlineSignal(
      { ...opts, timeoutMs: opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS },
      `reading ${path}`,
    );
    const parts: Buffer[] = [];
    let offset = 0;
    for (;;) {
      // One byte past the cap tells a file of exactly maxBytes from a bigger one.
      const want = Math.min(MAX_READ_SLICE, maxBytes + 1 - offset);
      const { body, size } = await this.readFileSlice(path, offset, want, { signal });
      parts.push(body);
      offset += body.length;
      if (offset > maxBytes) {
        throw new TooLargeError(`${path} is larger than the ${maxBytes}-byte read limit`, maxBytes, {
          hint: 'read a part of it with an exec (head -c, tail -c) or compress it first',
        });
      }
      // A short slice is the end; an empty one can make no progress either way.
      if (body.length < want || body.length === 0 || (size > 0 && offset >= size)) break;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  }

  /**
   * One slice of a file: up to `length` bytes (at most one frame's worth)
   * from `offset`, and the file's size. A slice longer than asked is the
   * agent breaking the protocol.
   */
  async readFileSlice(
    path: string,
    offset: number,
    length: number,
    opts: CallOptions = {},
  ): Promise<{ body: Buffer; size: number }> {
    const want = Math.min(length, MAX_READ_SLICE);
    const { head, body } = await this.call(
      RequestType.FILE_READ,
      [
        [Field.PATH, path],
        [Field.OFFSET, offset],
        [Field.LENGTH, want],
      ],
      opts,
      'read file',
    );
    const slice = readSliceFromHead(head);
    if (body.length > want || slice.length !== body.length) {
      const reason = `a read of ${want} bytes of ${path} was answered with ${body.length}`;
      this.violation(reason);
      throw new AgentUnavailableError(`the agent broke the protocol: ${reason}`, reason);
    }
    return { body, size: slice.size };
  }

  /** Writes a file (byte-exact); large data goes as one write followed by appends. */
  async writeFile(
    path: string,
    data: Buffer | string,
    options: WriteFileOptions = {},
    opts: CallOptions = {},
  ): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const signal = deadlineSignal(opts, `writing ${path}`);
    let off = 0;
    do {
      const chunk = bytes.subarray(off, off + MAX_REQUEST_BODY);
      const fields: Array<[Field, FieldValue]> = [
        [Field.PATH, path],
        [Field.DATA, chunk],
      ];
      if (off === 0) {
        if (options.mode !== undefined) fields.push([Field.MODE, mode(options.mode)]);
        if (options.parents) fields.push([Field.PARENTS, '1']);
      }
      if (off > 0 || options.append) fields.push([Field.APPEND, '1']);
      await this.call(RequestType.FILE_WRITE, fields, { signal }, 'write file');
      off += chunk.length;
    } while (off < bytes.length);
  }

  /** Lists a directory (sorted by name; `.` and `..` omitted). */
  async listDir(path: string, opts?: CallOptions): Promise<FileInfo[]> {
    return listFromHead((await this.call(RequestType.FILE_LIST, [[Field.PATH, path]], opts, 'list')).head);
  }

  /** Metadata of a path (lstat: a symlink is reported as itself). */
  async stat(path: string, opts?: CallOptions): Promise<FileInfo> {
    return fileInfoFromHead(
      (await this.call(RequestType.FILE_STAT, [[Field.PATH, path]], opts, 'stat')).head,
    );
  }

  /** Removes a file, an empty directory, or (recursive) a whole tree. */
  async remove(path: string, options: RemoveOptions = {}, opts?: CallOptions): Promise<void> {
    const fields: Array<[Field, FieldValue]> = [[Field.PATH, path]];
    if (options.recursive) fields.push([Field.RECURSIVE, '1']);
    await this.call(RequestType.FILE_REMOVE, fields, opts, 'remove');
  }

  /** Creates a directory (with `parents`, like mkdir -p). */
  async mkdir(path: string, options: MkdirOptions = {}, opts?: CallOptions): Promise<void> {
    const fields: Array<[Field, FieldValue]> = [[Field.PATH, path]];
    if (options.parents) fields.push([Field.PARENTS, '1']);
    if (options.mode !== undefined) fields.push([Field.MODE, mode(options.mode)]);
    await this.call(RequestType.MKDIR, fields, opts, 'mkdir');
  }

  /** @internal AgentTransport: allocate an id and route its frames to sink. */
  register(sink: FrameSink): number {
    this.assertUsable();
    let id = this.nextId;
    while (id === 0 || this.pending.has(id)) id = (id + 1) >>> 0;
    this.nextId = (id + 1) >>> 0;
    this.pending.set(id, sink);
    return id;
  }

  /** @internal AgentTransport */
  unregister(id: number): void {
    this.pending.delete(id);
  }

  /** @internal AgentTransport */
  send(id: number, type: RequestType, fields: FieldList): void {
    this.assertUsable();
    this.socket.write(encodeRequest(id, type, fields));
  }

  /**
   * Resolves once the channel has room for more requests. Streaming senders
   * (a port relay's bytes) wait on it, so a guest that stops reading holds
   * them back instead of growing this process's write buffer.
   */
  writable(): Promise<void> {
    const socket = this.socket;
    if (!socket.writableNeedDrain || socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        socket.off('drain', done);
        socket.off('close', done);
        resolve();
      };
      socket.once('drain', done);
      socket.once('close', done);
    });
  }

  private assertUsable(): void {
    if (this.isClosed) {
      if (this.closeError instanceof AgentUnavailableError) throw this.closeError;
      throw new AgentError('agent channel closed');
    }
    if (this.reconnecting) {
      const reason = this.healthState.reason ?? 'unknown';
      throw new AgentUnavailableError(
        `reconnecting to the agent after it broke the protocol (${reason})`,
        reason,
      );
    }
  }

  /** @internal AgentTransport. Under an id of its own that nothing waits on: an agent that predates CREDIT answers it with an ERROR, which is then ignored. */
  credit(id: number, bytes: number): void {
    // Nothing to acknowledge on a channel being replaced: its commands were failed with it.
    if (this.isClosed || this.reconnecting) return;
    const creditId = this.register({ onFrame: () => undefined, fail: () => undefined });
    this.unregister(creditId);
    this.send(creditId, RequestType.CREDIT, [
      [Field.TARGET, id],
      [Field.LENGTH, bytes],
    ]);
  }

  /** The agent broke the protocol in a way only the request's owner can see. */
  private violation(reason: string): void {
    if (!this.isClosed && !this.reconnecting) this.broken(reason);
  }

  /** One request, one OK (resolves) or ERROR (rejects with AgentError). */
  private async call(
    type: RequestType,
    fields: FieldList,
    opts: CallOptions = {},
    what: string,
  ): Promise<{ head: Head; body: Buffer }> {
    const site = callSite();
    const signal = deadlineSignal(
      { ...opts, timeoutMs: opts.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS },
      `agent ${what}`,
    );
    if (signal.aborted) throw abortReason(signal);
    return new Promise((resolve, reject) => {
      let id = 0;
      const onAbort = () => {
        this.unregister(id);
        reject(abortReason(signal));
      };
      const settle = () => {
        signal.removeEventListener('abort', onAbort);
        this.unregister(id);
      };
      try {
        id = this.register({
          onFrame: (t, head, body) => {
            settle();
            if (t === ResponseType.OK) resolve({ head, body });
            else if (t === ResponseType.ERROR) reject(withCallSite(agentErrorFromHead(head), site));
            else reject(withCallSite(new AgentError(`unexpected response type ${t} to ${what}`), site));
          },
          fail: (err) => {
            settle();
            reject(withCallSite(err, site));
          },
        });
        this.send(id, type, fields);
      } catch (err) {
        settle();
        reject(withCallSite(err as Error, site));
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Wires a (new) socket in; resolves when it closes. Events of a replaced socket are ignored. */
  private attach(socket: net.Socket): Promise<void> {
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => {
      if (socket === this.socket) this.onData(chunk);
    });
    socket.on('error', (err) => {
      if (socket === this.socket) this.closeError ??= err;
    });
    socket.on('close', () => {
      if (socket === this.socket && !this.reconnecting) this.finalClose();
    });
    return closed;
  }

  private onData(chunk: Buffer): void {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.broken(`agent channel corrupt: ${(err as Error).message}`);
      return;
    }
    for (const frame of frames) {
      const sink = this.pending.get(frame.id);
      if (!sink) continue; // an aborted call, or an ERROR for an unparseable frame (id 0)
      let decoded;
      try {
        decoded = decodeResponsePayload(frame.payload);
      } catch (err) {
        this.unregister(frame.id);
        sink.fail(new AgentError(`agent sent a malformed response: ${(err as Error).message}`));
        continue;
      }
      // A proper answer after a reconnect: the agent keeps to the protocol again (its errors still count).
      if (!this.healthState.healthy) this.healthState = { ...this.healthState, healthy: true };
      sink.onFrame(frame.type, decoded.head, decoded.body);
    }
  }

  /**
   * The guest broke the framing: nothing more on this connection can be
   * trusted. Fail what is in flight with the reason and reconnect, unless it
   * has done this too often.
   */
  private broken(reason: string): void {
    const channelErrors = this.healthState.channelErrors + 1;
    this.healthState = { healthy: false, reason, channelErrors };
    const error = new AgentUnavailableError(`the agent broke the protocol: ${reason}`, reason, {
      hint: channelErrors >= MAX_CHANNEL_ERRORS ? 'kill the sandbox' : 'retry the call',
    });
    this.failPending(error);
    this.decoder = new FrameDecoder();
    if (channelErrors >= MAX_CHANNEL_ERRORS) {
      this.closeError = error;
      this.socket.destroy();
      this.finalClose();
      return;
    }
    const old = this.socket;
    this.reconnecting = this.reconnect(old, channelErrors);
    old.destroy();
  }

  private async reconnect(old: net.Socket, attempt: number): Promise<void> {
    await new Promise<void>((resolve) => old.once('close', () => resolve()));
    await sleep(50 * 2 ** attempt);
    let next: net.Socket;
    try {
      next = await connectUnix(this.path, AbortSignal.timeout(5_000));
    } catch (err) {
      this.reconnecting = null;
      this.closeError = err as Error;
      this.finalClose();
      return;
    }
    if (this.isClosed) {
      next.destroy();
      return;
    }
    this.socket = next;
    this.socketClosed = this.attach(next);
    this.reconnecting = null;
  }

  private failPending(err: Error): void {
    const sinks = [...this.pending.values()];
    this.pending.clear();
    for (const sink of sinks) sink.fail(err);
  }

  private finalClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.failPending(
      this.closeError instanceof AgentUnavailableError
        ? this.closeError
        : new AgentError('agent channel closed', undefined, { cause: this.closeError }),
    );
    for (const listener of this.closeListeners) listener(this.closeError);
    this.closeListeners.clear();
  }
}
