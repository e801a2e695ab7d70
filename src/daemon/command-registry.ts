// Commands started through the API. Each keeps its events (output chunks,
// then exit) so a client can stream them live, replay them later
// (background commands), send stdin and kill by command id.
import { randomBytes } from 'node:crypto';
import type { ExecHandle, ExecRequest } from '../engine/agent/types.js';
import type { Sandbox } from '../engine/index.js';
import { NotFoundError } from '../errors.js';
import { toHttpError } from './http-errors.js';
import type { CommandEvent } from '../api/schemas.js';

export type { CommandEvent };

/** Output kept per command for replay; past it, the oldest chunks are dropped. */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** A finished command stays queryable this long. */
export const KEEP_FINISHED_MS = 60_000;

/** A client following a command: `write` answers false while it is backed up. */
export interface CommandFollower {
  write(event: CommandEvent): boolean;
}

export interface Subscription {
  /** The follower caught up (its stream drained). */
  drained(): void;
  unsubscribe(): void;
}

export class CommandSession {
  readonly events: CommandEvent[] = [];
  private bufferedBytes = 0;
  /** Each follower, and whether it is backed up. */
  private readonly followers = new Map<CommandFollower, { backedUp: boolean }>();
  /** Output received while a follower was backed up, acknowledged once all catch up. */
  private heldBytes = 0;
  finished = false;
  handle: ExecHandle | undefined;

  constructor(
    readonly id: string,
    readonly sandboxId: string,
    readonly stdinOpen: boolean,
  ) {}

  /** Records an event and passes it on; `bytes` of output are acknowledged to the guest once every follower has taken them. */
  push(event: CommandEvent, bytes = 0): void {
    this.events.push(event);
    if (event.type === 'stdout' || event.type === 'stderr') {
      this.bufferedBytes += event.data.length;
      while (this.bufferedBytes > MAX_BUFFERED_BYTES && this.events.length > 2) {
        const [dropped] = this.events.splice(1, 1); // keep 'start'
        if (dropped && (dropped.type === 'stdout' || dropped.type === 'stderr'))
          this.bufferedBytes -= dropped.data.length;
      }
    }
    if (event.type === 'exit' || event.type === 'error') this.finished = true;
    for (const [follower, state] of this.followers) {
      if (!follower.write(event)) state.backedUp = true;
    }
    this.heldBytes += bytes;
    this.release();
  }

  /** Clients following this command right now. */
  get streaming(): number {
    return this.followers.size;
  }

  /** Replay what happened so far, then follow live. */
  subscribe(follower: CommandFollower): Subscription {
    let backedUp = false;
    for (const event of this.events) if (!follower.write(event)) backedUp = true;
    if (this.finished) return { drained: () => undefined, unsubscribe: () => undefined };
    this.followers.set(follower, { backedUp });
    return {
      drained: () => {
        const state = this.followers.get(follower);
        if (state) state.backedUp = false;
        this.release();
      },
      unsubscribe: () => {
        this.followers.delete(follower);
        this.release();
      },
    };
  }

  /**
   * The guest may send more only when nobody following is behind: a slow
   * reader pauses the command. With no follower the replay buffer (capped,
   * oldest dropped) is the only consumer, so output is acknowledged at once.
   */
  private release(): void {
    if (this.heldBytes === 0 || [...this.followers.values()].some((s) => s.backedUp)) return;
    const bytes = this.heldBytes;
    this.heldBytes = 0;
    this.handle?.ack(bytes);
  }
}

export class CommandRegistry {
  private readonly sessions = new Map<string, CommandSession>();

  start(sandbox: Sandbox, req: ExecRequest): CommandSession {
    const id = `cmd-${randomBytes(9).toString('base64url')}`;
    const session = new CommandSession(id, sandbox.id, req.stdinOpen ?? false);
    this.sessions.set(id, session);
    session.push({ type: 'start', command_id: id });
    const decoders = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    const emit = (type: 'stdout' | 'stderr', chunk: Buffer) => {
      const data = decoders[type].decode(chunk, { stream: true });
      if (data) session.push({ type, data }, chunk.length);
      else session.handle?.ack(chunk.length);
    };
    // Output reaches clients through the session (replay and followers), never a second buffer.
    session.handle = sandbox.agent.startExec(
      { ...req, collectOutput: false },
      { onStdout: (c) => emit('stdout', c), onStderr: (c) => emit('stderr', c), manualAck: true },
    );
    session.handle
      .wait()
      .then(
        (r) => session.push({ type: 'exit', exit_code: r.exitCode, signal: r.signal, timed_out: r.timedOut }),
        (err: unknown) => {
          const { message, code } = toHttpError(err);
          session.push({ type: 'error', error: message, code });
        },
      )
      .finally(() => {
        setTimeout(() => this.sessions.delete(id), KEEP_FINISHED_MS).unref();
      });
    return session;
  }

  /**
   * Resolve when every command being streamed to a client has finished, or
   * after `timeoutMs`: a draining daemon lets them complete.
   */
  async drain(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && [...this.sessions.values()].some((s) => !s.finished && s.streaming > 0)) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  get(sandboxId: string, commandId: string): CommandSession {
    const session = this.sessions.get(commandId);
    if (!session || session.sandboxId !== sandboxId) {
      throw new NotFoundError(`command ${JSON.stringify(commandId)} not found`, {
        kind: 'command',
        name: commandId,
      });
    }
    return session;
  }
}
