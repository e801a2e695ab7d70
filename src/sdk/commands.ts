// sandbox.commands, E2B style: run() streams a command to completion (or
// returns a CommandHandle with `background: true`); a non-zero exit throws
// CommandExitError carrying the output.
import type { Controller, KillCommandOpts } from './controller.js';
import {
  CommandExitError,
  ControllerError,
  errorFromEvent,
  NotFoundError,
  controllerError,
} from './errors.js';
import { requestSignal, type RequestOpts } from './http.js';
import type { CommandEvent } from './types.js';

/** How a command ended. */
export interface CommandResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  /** The signal that ended it (e.g. `"SIGKILL"`), else null. */
  signal: string | null;
  /** True when the daemon killed it at `timeoutMs`. */
  timedOut: boolean;
}

/** Output callbacks: each gets a UTF-8 chunk as soon as the daemon sends it. */
export interface CommandOutputOpts {
  onStdout?: (data: string) => void;
  onStderr?: (data: string) => void;
}

/** `commands.run` options. */
export interface CommandRunOpts extends CommandOutputOpts, RequestOpts {
  /** Kill the command after this long; default 60 s. With `background`, 0 means never. */
  timeoutMs?: number;
  envs?: Record<string, string>;
  cwd?: string;
  /** Keep stdin open so `sendStdin` can feed it (close it with `closeStdin`). */
  stdin?: boolean;
  /** Return a CommandHandle at once instead of waiting for the exit. */
  background?: boolean;
}

/** `wait()` options. */
export interface CommandWaitOpts extends RequestOpts {
  /** Resolve with a non-zero result instead of throwing CommandExitError. */
  allowNonZeroExit?: boolean;
}

/** Extra slack over a command's own timeout before the HTTP request gives up. */
const REQUEST_SLACK_MS = 10_000;

/** Folds a command's event stream into a result, calling the output callbacks on the way. */
async function collect(
  events: AsyncIterable<CommandEvent>,
  callbacks: CommandOutputOpts,
  url: string,
  onStart?: (commandId: string) => void,
): Promise<CommandResult> {
  let stdout = '';
  let stderr = '';
  for await (const event of events) {
    switch (event.type) {
      case 'start':
        onStart?.(event.command_id);
        break;
      case 'stdout':
        stdout += event.data;
        callbacks.onStdout?.(event.data);
        break;
      case 'stderr':
        stderr += event.data;
        callbacks.onStderr?.(event.data);
        break;
      case 'exit':
        return {
          stdout,
          stderr,
          exitCode: event.exit_code,
          signal: event.signal ?? null,
          timedOut: event.timed_out,
        };
      case 'error':
        throw errorFromEvent(event, url);
    }
  }
  // The daemon always ends with exit or error: the connection was cut.
  throw controllerError('the command stream ended without an exit event', {
    status: 200,
    code: 'internal',
    body: null,
    url,
  });
}

function checkExit(result: CommandResult, allowNonZeroExit: boolean | undefined): CommandResult {
  if (result.exitCode !== 0 && !allowNonZeroExit) throw new CommandExitError(result);
  return result;
}

/** A command running in the background. */
export class CommandHandle {
  /** The follow started for output callbacks; lives until exit or `disconnect()`. */
  private readonly live: Promise<CommandResult> | undefined;
  private finished: CommandResult | undefined;
  private readonly stop = new AbortController();

  /** @internal Use `sandbox.commands.run(cmd, { background: true })` or `commands.connect`. */
  constructor(
    private readonly controller: Controller,
    private readonly sandboxId: string,
    /** The daemon's id for the command (`cmd-…`). */
    readonly commandId: string,
    private readonly callbacks: CommandOutputOpts = {},
  ) {
    // With callbacks, output flows at once, as in E2B. Without, nothing is
    // followed until wait(), so an idle handle holds no connection open.
    if (callbacks.onStdout || callbacks.onStderr) {
      this.live = this.follow(this.stop.signal, callbacks);
      this.live.catch(() => undefined);
    }
  }

  private async follow(
    signal: AbortSignal | undefined,
    callbacks: CommandOutputOpts,
  ): Promise<CommandResult> {
    const events = await this.controller.commandEvents(this.sandboxId, this.commandId, { signal });
    const result = await collect(events, callbacks, `${this.controller.url}/v1/sandboxes/${this.sandboxId}`);
    this.finished = result;
    return result;
  }

  /**
   * Waits for the exit. Without output callbacks, each wait replays the
   * output from the start (the daemon keeps up to 1 MiB per command). Throws
   * CommandExitError on a non-zero exit unless `allowNonZeroExit`.
   */
  async wait(opts?: CommandWaitOpts): Promise<CommandResult> {
    const signal = requestSignal(opts);
    let result = this.finished;
    if (!result && this.live) result = await untilAborted(this.live, signal);
    else if (!result) {
      const signals = signal ? [signal, this.stop.signal] : [this.stop.signal];
      result = await this.follow(AbortSignal.any(signals), {});
    }
    return checkExit(result, opts?.allowNonZeroExit);
  }

  /** Kills the command; false if the daemon no longer knows it. */
  async kill(opts?: KillCommandOpts): Promise<boolean> {
    return killCommand(this.controller, this.sandboxId, this.commandId, opts);
  }

  /** Writes to the command's stdin (it must have been started with `stdin: true`). */
  sendStdin(data: string, opts?: RequestOpts): Promise<void> {
    return this.controller.sendStdin(this.sandboxId, this.commandId, data, opts);
  }

  /** Closes the command's stdin (EOF). */
  closeStdin(opts?: RequestOpts): Promise<void> {
    return this.controller.sendStdin(this.sandboxId, this.commandId, '', { ...opts, eof: true });
  }

  /** Stops following the output (pending waits reject); the command keeps running. */
  disconnect(): void {
    this.stop.abort();
  }
}

/** `work`, or a rejection with the signal's reason once it aborts (work carries on). */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason as Error);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function killCommand(
  controller: Controller,
  sandboxId: string,
  commandId: string,
  opts?: KillCommandOpts,
): Promise<boolean> {
  try {
    await controller.killCommand(sandboxId, commandId, opts);
    return true;
  } catch (err) {
    if (err instanceof NotFoundError) return false;
    throw err;
  }
}

/** `sandbox.commands`. */
export class Commands {
  /** @internal Reached through `sandbox.commands`. */
  constructor(
    private readonly controller: Controller,
    private readonly sandboxId: string,
  ) {}

  /** Runs a shell command in the background and returns its handle. */
  run(cmd: string, opts: CommandRunOpts & { background: true }): Promise<CommandHandle>;
  /** Runs a shell command to completion; throws CommandExitError on a non-zero exit. */
  run(cmd: string, opts?: CommandRunOpts & { background?: false }): Promise<CommandResult>;
  /** Runs a shell command (`/bin/sh -c cmd`). */
  run(cmd: string, opts?: CommandRunOpts): Promise<CommandResult | CommandHandle>;
  async run(cmd: string, opts: CommandRunOpts = {}): Promise<CommandResult | CommandHandle> {
    const params = {
      cmd,
      envs: opts.envs,
      cwd: opts.cwd,
      stdinOpen: opts.stdin,
      timeoutSecs: opts.timeoutMs === undefined ? undefined : Math.ceil(opts.timeoutMs / 1000),
    };
    const callbacks = { onStdout: opts.onStdout, onStderr: opts.onStderr };
    if (opts.background) {
      const commandId = await this.controller.startCommand(this.sandboxId, params, { signal: opts.signal });
      return new CommandHandle(this.controller, this.sandboxId, commandId, callbacks);
    }
    // The daemon enforces the command's timeout; the request only gets a safety deadline.
    const requestOpts = {
      signal: opts.signal,
      timeoutMs: (opts.timeoutMs ?? 60_000) + REQUEST_SLACK_MS,
    };
    const events = await this.controller.runCommand(this.sandboxId, params, requestOpts);
    let commandId: string | undefined;
    try {
      const url = `${this.controller.url}/v1/sandboxes/${this.sandboxId}`;
      const result = await collect(events, callbacks, url, (id) => (commandId = id));
      return checkExit(result, false);
    } catch (err) {
      // The daemon keeps a command running when its client goes away; an
      // aborted or timed-out run must not leave it behind.
      if (commandId && !(err instanceof CommandExitError) && !(err instanceof ControllerError)) {
        await killCommand(this.controller, this.sandboxId, commandId, { timeoutMs: 10_000 }).catch(
          () => undefined,
        );
      }
      throw err;
    }
  }

  /** Attaches to a command started earlier (e.g. by another process). */
  connect(commandId: string, callbacks: CommandOutputOpts = {}): CommandHandle {
    return new CommandHandle(this.controller, this.sandboxId, commandId, callbacks);
  }

  /** Kills a command by id; false if the daemon no longer knows it. */
  kill(commandId: string, opts?: KillCommandOpts): Promise<boolean> {
    return killCommand(this.controller, this.sandboxId, commandId, opts);
  }

  /** Writes to a command's stdin (started with `stdin: true`). */
  sendStdin(commandId: string, data: string, opts?: RequestOpts): Promise<void> {
    return this.controller.sendStdin(this.sandboxId, commandId, data, opts);
  }

  /** Closes a command's stdin (EOF). */
  closeStdin(commandId: string, opts?: RequestOpts): Promise<void> {
    return this.controller.sendStdin(this.sandboxId, commandId, '', { ...opts, eof: true });
  }
}
