// envd's process.Process service over forkd's commands: start (streamed
// start, stdout/stderr, end events), connect to a running one, list, send
// stdin, close stdin, signal. E2B names a process by a pid; forkd's commands
// have ids, so each sandbox numbers its processes itself. Output goes
// through the daemon's CommandRegistry: a client that reads slowly holds the
// command back in the guest instead of growing a buffer here. A call's
// deadline (Connect-Timeout-Ms, the SDK's timeoutMs) kills the command, as
// E2B's does; a client that only goes away leaves it running (`disconnect`).
import type { ExecRequest } from '../../engine/agent/types.js';
import type { App } from '../context.js';
import {
  KEEP_FINISHED_MS,
  type CommandEvent,
  type CommandRegistry,
  type CommandSession,
} from '../command-registry.js';
import { registerServerStream, registerUnary, RpcError, type RpcContext } from './connect.js';
import type { E2bSandboxes } from './sandboxes.js';
import { E2B_HOME, e2bTarget, SANDBOX_PREFIX, type E2bTarget } from './target.js';

/** Output a stream may have written but the client not yet read before the command is held back. */
const STREAM_WINDOW_BYTES = 256 * 1024;
/** Processes a sandbox's table keeps (finished ones are forgotten first). */
const MAX_PROCESSES = 1024;

interface ProcessConfigJson {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

interface ProcessEntry {
  pid: number;
  startedAt: number;
  tag: string | undefined;
  config: ProcessConfigJson;
  session: CommandSession;
}

interface SelectorJson {
  pid?: number;
  tag?: string;
}

/** E2B's `{process: {pid}|{tag}}` selector. */
function selectorOf(message: unknown): SelectorJson {
  const process = (message as { process?: SelectorJson } | null)?.process;
  if (!process || (process.pid === undefined && process.tag === undefined))
    throw new RpcError('invalid_argument', 'give the process by pid or tag');
  return process;
}

function asStringArray(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw new RpcError('invalid_argument', `${what} must be a list of strings`);
  return v as string[];
}

function asStringMap(v: unknown, what: string): Record<string, string> {
  if (v === undefined) return {};
  if (typeof v !== 'object' || v === null || Object.values(v).some((x) => typeof x !== 'string'))
    throw new RpcError('invalid_argument', `${what} must map strings to strings`);
  return v as Record<string, string>;
}

/** An exit as E2B's end event: `status` is what Go's ProcessState prints. */
function endEvent(event: Extract<CommandEvent, { type: 'exit' }>): object {
  const signal = event.signal;
  const status = signal ? `signal: ${signalName(signal)}` : `exit status ${event.exit_code}`;
  return {
    end: {
      exitCode: signal ? -1 : event.exit_code,
      exited: !signal,
      status,
      ...(event.timed_out ? { error: 'the command reached its timeout and was killed' } : {}),
    },
  };
}

function signalName(signal: string | number): string {
  const names: Record<string, string> = {
    SIGKILL: 'killed',
    SIGTERM: 'terminated',
    '9': 'killed',
    '15': 'terminated',
  };
  return names[String(signal)] ?? String(signal);
}

export class ProcessTable {
  private readonly bySandbox = new Map<string, Map<number, ProcessEntry>>();
  private nextPid = new Map<string, number>();

  add(e2bId: string, entry: Omit<ProcessEntry, 'pid' | 'startedAt'>): ProcessEntry {
    const table = this.bySandbox.get(e2bId) ?? new Map<number, ProcessEntry>();
    this.bySandbox.set(e2bId, table);
    // A finished command's session holds up to a MiB of replay: the table forgets finished ones
    // started longer ago than the registry keeps them, so many commands do not add up here.
    const now = Date.now();
    for (const [pid, e] of table) {
      if (e.session.finished && now - e.startedAt > KEEP_FINISHED_MS) table.delete(pid);
    }
    if (table.size >= MAX_PROCESSES) {
      for (const [pid, e] of table) if (e.session.finished) table.delete(pid);
      if (table.size >= MAX_PROCESSES)
        throw new RpcError('resource_exhausted', `${MAX_PROCESSES} processes are running in this sandbox`);
    }
    // Numbers above the guest's init-time pids, so they read like pids without claiming to be the guest's.
    const pid = this.nextPid.get(e2bId) ?? 1000;
    this.nextPid.set(e2bId, pid + 1);
    const full = { ...entry, pid, startedAt: now };
    table.set(pid, full);
    return full;
  }

  find(e2bId: string, selector: SelectorJson): ProcessEntry {
    const table = this.bySandbox.get(e2bId);
    const entry =
      selector.pid !== undefined
        ? table?.get(Number(selector.pid))
        : [...(table?.values() ?? [])].find((e) => e.tag === selector.tag && !e.session.finished);
    if (!entry) {
      const name = selector.pid !== undefined ? `pid ${selector.pid}` : `tag ${selector.tag}`;
      throw new RpcError('not_found', `process with ${name} not found`);
    }
    return entry;
  }

  running(e2bId: string): ProcessEntry[] {
    return [...(this.bySandbox.get(e2bId)?.values() ?? [])].filter((e) => !e.session.finished);
  }

  forget(e2bId: string): void {
    this.bySandbox.delete(e2bId);
    this.nextPid.delete(e2bId);
  }
}

/**
 * Follow a command as a Connect stream: replayed events then live ones,
 * with `send` awaited so the client's pace sets the command's.
 */
async function follow(
  session: CommandSession,
  pid: number,
  ctx: RpcContext,
  send: (message: object) => Promise<void>,
): Promise<void> {
  /** Messages not yet sent, each with the output bytes it carries. */
  const queue: Array<{ message: object; bytes: number }> = [];
  let queuedBytes = 0;
  let wake: (() => void) | null = null;
  let ended = false;
  const subscription = session.subscribe({
    write: (event) => {
      let message: object | null = null;
      let bytes = 0;
      if (event.type === 'start') message = { start: { pid } };
      else if (event.type === 'stdout' || event.type === 'stderr') {
        const data = Buffer.from(event.data);
        bytes = data.length;
        queuedBytes += bytes;
        message = { data: { [event.type]: data.toString('base64') } };
      } else if (event.type === 'exit') {
        message = endEvent(event);
        ended = true;
      } else if (event.type === 'error') {
        message = { end: { exitCode: -1, exited: false, status: 'error', error: event.error } };
        ended = true;
      }
      if (message) queue.push({ message: { event: message }, bytes });
      wake?.();
      return queuedBytes < STREAM_WINDOW_BYTES;
    },
  });
  const keepaliveSecs = Number(ctx.request.headers['keepalive-ping-interval'] ?? 0);
  const keepalive =
    keepaliveSecs > 0
      ? setInterval(() => {
          queue.push({ message: { event: { keepalive: {} } }, bytes: 0 });
          wake?.();
        }, keepaliveSecs * 1000)
      : undefined;
  const onAbort = (): void => wake?.();
  ctx.signal.addEventListener('abort', onAbort);
  try {
    for (;;) {
      while (queue.length > 0) {
        const next = queue.shift()!;
        await send(next.message);
        queuedBytes -= next.bytes;
        if (queuedBytes < STREAM_WINDOW_BYTES) subscription.drained();
      }
      if (ended) return;
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = null;
    }
  } finally {
    clearInterval(keepalive);
    ctx.signal.removeEventListener('abort', onAbort);
    subscription.unsubscribe();
  }
}

export function registerProcessService(
  app: App,
  sandboxes: E2bSandboxes,
  commands: CommandRegistry,
  table: ProcessTable,
): void {
  const base = `${SANDBOX_PREFIX}/process.Process`;
  const target = (ctx: RpcContext): E2bTarget => e2bTarget(ctx.request, sandboxes);

  registerServerStream(app, `${base}/Start`, async (message, ctx, send) => {
    const t = target(ctx);
    const m = (message ?? {}) as {
      process?: Record<string, unknown>;
      pty?: unknown;
      tag?: string;
      stdin?: boolean;
    };
    if (m.pty) throw new RpcError('unimplemented', 'forkd sandboxes have no PTY: use commands, not pty');
    const p = m.process ?? {};
    if (typeof p.cmd !== 'string' || p.cmd === '')
      throw new RpcError('invalid_argument', 'process.cmd is required');
    const config: ProcessConfigJson = {
      cmd: p.cmd,
      args: asStringArray(p.args, 'process.args'),
      envs: asStringMap(p.envs, 'process.envs'),
      ...(typeof p.cwd === 'string' ? { cwd: p.cwd } : {}),
    };
    // E2B's commands are `/bin/bash -l -c <cmd>`; a guest without bash runs them in its sh.
    const cmd = config.cmd === '/bin/bash' ? sandboxes.shellFor(t.record) : config.cmd;
    const timeoutText = ctx.request.headers['connect-timeout-ms'];
    const timeoutMs = typeof timeoutText === 'string' ? Math.max(0, Number(timeoutText) || 0) : 0;
    const req: ExecRequest = {
      args: [cmd, ...config.args],
      env: { HOME: E2B_HOME, ...t.record.envs, ...config.envs },
      cwd: config.cwd ?? E2B_HOME,
      stdinOpen: m.stdin ?? false,
      timeoutMs,
    };
    const session = commands.start(t.sandbox, req);
    const entry = table.add(t.record.id, { tag: m.tag, config, session });
    await follow(session, entry.pid, ctx, send);
  });

  registerServerStream(app, `${base}/Connect`, async (message, ctx, send) => {
    const t = target(ctx);
    const entry = table.find(t.record.id, selectorOf(message));
    await follow(entry.session, entry.pid, ctx, send);
  });

  registerUnary(app, `${base}/List`, async (_message, ctx) => {
    const t = target(ctx);
    return {
      processes: table.running(t.record.id).map((e) => ({
        config: e.config,
        pid: e.pid,
        ...(e.tag ? { tag: e.tag } : {}),
      })),
    };
  });

  registerUnary(app, `${base}/SendInput`, async (message, ctx) => {
    const t = target(ctx);
    const entry = table.find(t.record.id, selectorOf(message));
    const input = (message as { input?: { stdin?: string; pty?: string } }).input;
    if (input?.pty !== undefined) throw new RpcError('unimplemented', 'forkd sandboxes have no PTY');
    if (!entry.session.stdinOpen)
      throw new RpcError(
        'failed_precondition',
        'this process was started without stdin: start it with stdin: true',
      );
    if (entry.session.finished) throw new RpcError('not_found', `process ${entry.pid} has finished`);
    if (input?.stdin) entry.session.handle?.writeStdin(Buffer.from(input.stdin, 'base64'));
    return {};
  });

  registerUnary(app, `${base}/CloseStdin`, async (message, ctx) => {
    const t = target(ctx);
    const entry = table.find(t.record.id, selectorOf(message));
    if (!entry.session.stdinOpen)
      throw new RpcError('failed_precondition', 'this process was started without stdin');
    if (!entry.session.finished) entry.session.handle?.closeStdin();
    return {};
  });

  registerUnary(app, `${base}/SendSignal`, async (message, ctx) => {
    const t = target(ctx);
    const entry = table.find(t.record.id, selectorOf(message));
    const signal = (message as { signal?: string | number }).signal;
    const sig =
      signal === 'SIGNAL_SIGTERM' || signal === 15
        ? 'SIGTERM'
        : signal === 'SIGNAL_SIGKILL' || signal === 9
          ? 'SIGKILL'
          : null;
    if (!sig)
      throw new RpcError(
        'invalid_argument',
        `signal must be SIGNAL_SIGTERM or SIGNAL_SIGKILL, got ${String(signal)}`,
      );
    if (!entry.session.finished) entry.session.handle?.kill(sig);
    return {};
  });

  registerUnary(app, `${base}/Update`, async () => {
    throw new RpcError('unimplemented', 'forkd sandboxes have no PTY to resize');
  });

  registerUnary(app, `${base}/StreamInput`, async () => {
    throw new RpcError('unimplemented', 'StreamInput (client streaming) is not served: use SendInput');
  });
}
