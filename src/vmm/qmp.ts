// QMP client: QEMU's JSON control protocol over a unix socket. Commands carry
// ids and may be in flight together; events are delivered to listeners and can
// be awaited. Closing the socket rejects every pending command.
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { QmpError } from '../errors.js';
import { abortReason, deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { connectUnix } from '../util/unix-socket.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  callerError: QmpError;
}

export interface QmpConnectOptions extends CallOptions {
  /** Keep retrying while the socket does not exist yet (QEMU still starting). */
  retryIntervalMs?: number;
}

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffer = '';
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('close', () => this.onClose());
    socket.on('error', () => undefined); // 'close' follows and carries the consequence
  }

  /** Connect, read the greeting and negotiate capabilities. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const signal = deadlineSignal(
      { timeoutMs: opts.timeoutMs ?? 10_000, signal: opts.signal },
      'QMP connect',
    );
    for (;;) {
      try {
        const socket = await connectUnix(path, signal);
        const client = new QmpClient(socket);
        try {
          await client.waitGreeting(signal);
          await client.execute('qmp_capabilities', undefined, { signal });
          return client;
        } catch (err) {
          client.close();
          throw err;
        }
      } catch (err) {
        if (signal.aborted) throw abortReason(signal);
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ECONNREFUSED') throw err;
        await sleep(opts.retryIntervalMs ?? 2, signal);
      }
    }
  }

  private greeting: ((ok: boolean) => void) | undefined;
  private greeted = false;

  private waitGreeting(signal: AbortSignal): Promise<void> {
    if (this.greeted) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(abortReason(signal));
      signal.addEventListener('abort', onAbort, { once: true });
      this.greeting = (ok) => {
        signal.removeEventListener('abort', onAbort);
        if (ok) resolve();
        else reject(new QmpError('QMP socket closed before the greeting', 'greeting', undefined));
      };
    });
  }

  /** Run a QMP command; resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: CallOptions = {}): Promise<T> {
    const callerError = new QmpError(`QMP ${command} failed`, command, undefined);
    if (this.closed) {
      callerError.message = `QMP ${command}: connection closed`;
      return Promise.reject(callerError);
    }
    const id = this.nextId++;
    const signal = deadlineSignal(
      { timeoutMs: opts.timeoutMs ?? 30_000, signal: opts.signal },
      `QMP ${command}`,
    );
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => {
        this.pending.delete(id);
        reject(abortReason(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        command,
        callerError,
        resolve: (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject: (e) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      const message: Record<string, unknown> = { execute: command, id };
      if (args) message.arguments = args;
      this.socket.write(JSON.stringify(message) + '\n');
    });
  }

  /** Resolve with the first event named `name` that satisfies `accept`. */
  waitForEvent(
    name: string,
    accept: (e: QmpEvent) => boolean = () => true,
    opts: CallOptions = {},
  ): Promise<QmpEvent> {
    const signal = deadlineSignal(opts, `waiting for QMP event ${name}`);
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        this.off('event', onEvent);
        this.off('close', onClose);
        signal.removeEventListener('abort', onAbort);
      };
      const onEvent = (e: QmpEvent) => {
        if (e.event === name && accept(e)) {
          cleanup();
          resolve(e);
        }
      };
      const onClose = () => {
        cleanup();
        reject(new QmpError(`QMP connection closed while waiting for ${name}`, name, undefined));
      };
      const onAbort = () => {
        cleanup();
        reject(abortReason(signal));
      };
      this.on('event', onEvent);
      this.on('close', onClose);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  close(): void {
    this.socket.destroy();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // QEMU never sends non-JSON on QMP; ignore rather than crash
    }
    if ('QMP' in msg) {
      this.greeted = true;
      this.greeting?.(true);
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = msg.id;
    if (typeof id !== 'number') return;
    const pending = this.pending.get(id);
    if (!pending) return;
    this.pending.delete(id);
    if ('error' in msg) {
      const error = msg.error as { class?: string; desc?: string };
      const err = pending.callerError;
      err.message = `QMP ${pending.command}: ${error.desc ?? 'unknown error'}`;
      (err as { qmpClass: string | undefined }).qmpClass = error.class;
      pending.reject(err);
    } else {
      pending.resolve(msg.return);
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.greeting?.(false);
    for (const pending of this.pending.values()) {
      const err = pending.callerError;
      err.message = `QMP ${pending.command}: connection closed (QEMU exited?)`;
      pending.reject(err);
    }
    this.pending.clear();
    this.emit('close');
  }
}
