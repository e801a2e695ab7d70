// Host-side client of forkd-agent over one unix socket (QEMU's chardev socket
// for a VM, or `forkd-agent --listen` in tests). Requests are multiplexed by
// id: a pending map routes each response frame to its call, an aborted call
// is forgotten (late frames for it are ignored), and when the socket closes
// every pending call rejects with AgentError('agent channel closed').
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { AgentError } from '../../errors.js';
import { abortReason, deadlineSignal, sleep, type CallOptions } from '../../util/abort.js';
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
type CloseListener = (err: Error | undefined) => void;

const RETRYABLE = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

function connectOnce(path: string, signal: AbortSignal): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection({ path });
    const onAbort = () => {
      socket.destroy();
      reject(abortReason(signal));
    };
    socket.once('connect', () => {
      signal.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      signal.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function mode(m: number): string {
  if (!Number.isInteger(m) || m < 0 || m > 0o7777) throw new AgentError(`bad file mode ${m}`);
  return m.toString(8);
}

/** A connection to one guest agent. */
export class AgentClient implements AgentTransport {
  private readonly pending = new Map<number, FrameSink>();
  private readonly decoder = new FrameDecoder();
  private readonly closeListeners = new Set<CloseListener>();
  /**
   * Ids start at a random point: a virtio port outlives host connections, so
   * a reply to a request of a previous connection (a restarted daemon) can
   * still arrive and must not match one of ours.
   */
  private nextId = randomInt(1, 2 ** 31);
  private closeError: Error | undefined;
  private isClosed = false;
  private readonly closedPromise: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.closeError ??= err;
    });
    socket.on('close', () => this.handleClose());
  }

  /** Connects to the agent's socket, retrying while it does not exist yet (see retryUntilMs). */
  static async connect(socketPath: string, opts: ConnectOptions = {}): Promise<AgentClient> {
    const signal = deadlineSignal(opts, `connecting to the agent at ${socketPath}`);
    const until = Date.now() + (opts.retryUntilMs ?? 0);
    for (;;) {
      try {
        return new AgentClient(await connectOnce(socketPath, signal));
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

  /** True once the socket has closed; every later call rejects. */
  get closed(): boolean {
    return this.isClosed;
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
    this.socket.destroy();
    await this.closedPromise;
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
    if (req.vary !== undefined) fields.push([Field.VARY, req.vary]);
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

  /** Reads a whole file, in slices when it is larger than one frame. */
  async readFile(path: string, opts: CallOptions = {}): Promise<Buffer> {
    const signal = deadlineSignal(opts, `reading ${path}`);
    const parts: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const { head, body } = await this.call(
        RequestType.FILE_READ,
        [
          [Field.PATH, path],
          [Field.OFFSET, offset],
          [Field.LENGTH, MAX_READ_SLICE],
        ],
        { signal },
        'read file',
      );
      const slice = readSliceFromHead(head);
      parts.push(body);
      offset += body.length;
      if (body.length < MAX_READ_SLICE || (slice.size > 0 && offset >= slice.size)) break;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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
    if (this.isClosed) throw new AgentError('agent channel closed');
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
    if (this.isClosed) throw new AgentError('agent channel closed');
    this.socket.write(encodeRequest(id, type, fields));
  }

  /** One request, one OK (resolves) or ERROR (rejects with AgentError). */
  private async call(
    type: RequestType,
    fields: FieldList,
    opts: CallOptions = {},
    what: string,
  ): Promise<{ head: Head; body: Buffer }> {
    const site = callSite();
    const signal = deadlineSignal(opts, `agent ${what}`);
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

  private onData(chunk: Buffer): void {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.closeError = new AgentError(`agent channel corrupt: ${(err as Error).message}`);
      this.socket.destroy();
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
      sink.onFrame(frame.type, decoded.head, decoded.body);
    }
  }

  private handleClose(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const sinks = [...this.pending.values()];
    this.pending.clear();
    for (const sink of sinks) {
      sink.fail(new AgentError('agent channel closed', undefined, { cause: this.closeError }));
    }
    for (const listener of this.closeListeners) listener(this.closeError);
    this.closeListeners.clear();
  }
}
