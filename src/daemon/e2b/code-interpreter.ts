// E2B's code interpreter (what `@e2b/code-interpreter`'s runCode and code
// contexts call on port 49999) over forkd's warm Python runtime. The daemon
// sends the runtime a helper with each call, which installs itself once (in
// sys.modules) and keeps the contexts: the default context is the runtime's
// own globals (where a snapshot's warm state lives), every other one a
// namespace of its own with its own working directory. Contexts live in the
// guest's memory, not the daemon's, so they survive a daemon restart and a
// paused or forked sandbox keeps (a copy of) them. Nothing changes in the
// guest image: any snapshot with the python runtime can serve this.
//
// The wire, learned from the SDK: POST /execute {code, context_id, language,
// env_vars} is answered by JSON lines ({type: stdout|stderr|result|error|
// number_of_executions|keepalive}); contexts are {id, language, cwd}. A
// result's text is the value's repr; html, markdown, png ... come from the
// value's IPython display methods (_repr_html_ ...); json also from a plain
// dict or list. What a notebook kernel has and this has not: output streamed
// while the code runs (it comes when the code is done), display() and
// charts, magics and shell escapes, languages other than Python, executions
// in two contexts at once (one runtime runs one at a time), and interrupting
// code (a client that gives up stops waiting; the code runs on).
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { TimeoutError, type Sandbox } from '../../engine/index.js';
import type { EvalResult } from '../../engine/agent/types.js';
import type { App } from '../context.js';
import { clientGone } from '../client-gone.js';
import { helperCallCode, type HelperRequest } from './interpreter-helper.js';
import { OutputSpool, type SpoolLine } from './output-spool.js';
import { toHttpError } from '../http-errors.js';
import {
  e2bTarget,
  E2B_HOME,
  EnvdError,
  guestPathOf,
  SANDBOX_PREFIX,
  type E2bLookup,
  type E2bTarget,
} from './target.js';

/** The longest an execution may run; E2B's runCode has no server-side limit, forkd's agent call needs one. */
export const MAX_EXECUTION_MS = 60 * 60_000;
/** A context call (create, list, remove, restart) waits behind a running execution at most this long. */
const CONTEXT_CALL_MS = 60_000;
/**
 * An execution that finishes sooner is answered whole, so a refusal found in
 * the guest (an unknown context) is still an HTTP status; a longer one starts
 * its 200 stream then, well inside the SDK's 60 s wait for response headers.
 */
const COMMIT_AFTER_MS = 2_000;
/** A line every few seconds while code runs: proxies keep the stream open and a vanished client is noticed. */
const KEEPALIVE_MS = 5_000;
/** How often a running cell's new output is read from its spool. */
const POLL_MS = 200;
const NDJSON = 'application/x-ndjson';
const MAX_CODE_CHARS = 512 * 1024;
const ENV_NAME = /^[^=\0]+$/;
const CONTEXT_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** The default context's id (E2B's is a kernel id; this one is fixed, and the namespace is the runtime's). */
export const DEFAULT_CONTEXT = 'default';

// ---- The wire ---------------------------------------------------------

export interface ExecuteRequest {
  code: string;
  contextId: string | null;
  language: string | null;
  envVars: Record<string, string>;
}

export interface ExecError {
  name: string;
  value: string;
  traceback: string;
}

/** What one execution produced, whatever ran it. */
export interface ExecutionOutcome {
  stdout: string;
  stderr: string;
  /** E2B's formats of the main result (text, html, json, ...); null when the code ended without a value. */
  result: Record<string, unknown> | null;
  error: ExecError | null;
  /** The context's execution count; null when unknown. */
  count: number | null;
}

export interface ContextInfo {
  id: string;
  language: string;
  cwd: string;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** E2B's language names: case and spaces ignored, js and ts spelled out; none is Python. */
export function normalizeLanguage(language: string | null | undefined): string {
  const l = (language ?? '').trim().toLowerCase();
  if (l === '') return 'python';
  if (l === 'js') return 'javascript';
  if (l === 'ts') return 'typescript';
  return l;
}

function optionalString(body: Record<string, unknown>, key: string): string | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new EnvdError(400, `${key} must be a string`);
  return v;
}

function envVars(v: unknown): Record<string, string> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v)) throw new EnvdError(400, 'env_vars must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, value] of Object.entries(v)) {
    if (typeof value !== 'string') throw new EnvdError(400, `env_vars.${k} must be a string`);
    if (!ENV_NAME.test(k)) throw new EnvdError(400, `bad environment variable name ${JSON.stringify(k)}`);
    if (value.includes('\0')) throw new EnvdError(400, `env_vars.${k} contains a NUL byte`);
    out[k] = value;
  }
  return out;
}

/** The body of POST /execute, checked. */
export function parseExecuteBody(body: unknown): ExecuteRequest {
  if (!isRecord(body)) throw new EnvdError(400, 'the body must be a JSON object with `code`');
  const code = body.code;
  if (typeof code !== 'string') throw new EnvdError(400, '`code` must be a string');
  if (code.length > MAX_CODE_CHARS)
    throw new EnvdError(413, `code is longer than ${MAX_CODE_CHARS} characters`);
  const contextId = optionalString(body, 'context_id');
  const language = optionalString(body, 'language');
  if (contextId && language) throw new EnvdError(400, 'give context_id or language, not both');
  return { code, contextId: contextId || null, language, envVars: envVars(body.env_vars) };
}

/** Why a sandbox whose runtime is `kind` cannot run `language`; null when it can. */
export function runtimeRefusal(kind: string | null, language: string): EnvdError | null {
  // 404 and not 400: the JS SDK shows the body only for 404 (and 502), and this
  // message is the one thing the caller needs to read.
  if (kind !== 'python') {
    const has = kind === null ? 'no code runtime' : `a ${kind} runtime`;
    return new EnvdError(
      404,
      `this sandbox has ${has}, and forkd's code interpreter runs Python in the warm python runtime: ` +
        'create the sandbox from a template with one (e.g. python-numpy)',
    );
  }
  if (language !== 'python')
    return new EnvdError(400, `forkd's code interpreter runs Python only, not ${JSON.stringify(language)}`);
  return null;
}

/**
 * The exception's name and message from Python traceback text: the first
 * unindented line after the last traceback header (the message may go on
 * over the lines after it). Module paths are dropped from the name, as
 * Jupyter's `ename` has none.
 */
export function parseTraceback(text: string): { name: string; value: string } {
  const lines = text.replace(/\s+$/, '').split('\n');
  let from = 0;
  lines.forEach((line, i) => {
    if (line.startsWith('Traceback (most recent call last)')) from = i + 1;
  });
  for (let i = from; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '' || /^\s/.test(line)) continue;
    const m = /^([A-Za-z_][\w.]*)(?::(?: (.*))?)?$/.exec(line);
    if (!m) break;
    const name = m[1]!.split('.').pop()!;
    const value = [m[2] ?? '', ...lines.slice(i + 1)].join('\n');
    return { name, value };
  }
  return { name: 'Error', value: lines.filter((l) => l.trim() !== '').pop() ?? '' };
}

/** Output text as E2B's chunks: one per line, each with its newline. */
export function splitOutput(text: string): string[] {
  return text.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/** E2B shows a string's text without its quotes (its server strips them from text/plain). */
export function displayText(text: string): string {
  if (text.length >= 2 && (text[0] === "'" || text[0] === '"') && text.endsWith(text[0]))
    return text.slice(1, -1);
  return text;
}

/** The JSON lines that answer an execution, each ending in a newline. */
export function executionLines(o: ExecutionOutcome, timestamp: string): string[] {
  const lines: unknown[] = [];
  for (const text of splitOutput(o.stdout)) lines.push({ type: 'stdout', text, timestamp });
  for (const text of splitOutput(o.stderr)) lines.push({ type: 'stderr', text, timestamp });
  if (o.result) {
    const text = typeof o.result.text === 'string' ? displayText(o.result.text) : undefined;
    lines.push({ ...o.result, type: 'result', text, is_main_result: true });
  }
  if (o.error) lines.push({ type: 'error', ...o.error });
  if (o.count !== null) lines.push({ type: 'number_of_executions', execution_count: o.count });
  return lines.map((l) => `${JSON.stringify(l)}\n`);
}

function execError(v: unknown): ExecError | null {
  if (!isRecord(v)) return null;
  const str = (x: unknown): string => (typeof x === 'string' ? x : '');
  return { name: str(v.name) || 'Error', value: str(v.value), traceback: str(v.traceback) };
}

/**
 * The helper's reply to an execute as an outcome, or the refusal it holds
 * (an unknown context). A runtime that failed around the helper, or a
 * value too large to return, becomes the outcome's error.
 */
export function outcomeOf(r: EvalResult): ExecutionOutcome | EnvdError {
  const base = { stdout: r.stdout ?? '', stderr: r.stderr ?? '', result: null, count: null };
  if (r.error !== null) {
    return { ...base, error: { ...parseTraceback(r.error), traceback: r.error } };
  }
  const reply = r.result;
  if (!isRecord(reply)) {
    const value = 'the result was too large for the runtime to return (more than 8 MiB as JSON)';
    return { ...base, error: { name: 'ResultTooLarge', value, traceback: '' } };
  }
  if (typeof reply.status === 'number') return new EnvdError(reply.status, String(reply.message));
  return {
    ...base,
    result: isRecord(reply.result) ? reply.result : null,
    error: execError(reply.error),
    count: typeof reply.count === 'number' ? reply.count : null,
  };
}

/** An execution that could not finish, as E2B's error line. */
function failureOutcome(err: unknown): ExecutionOutcome {
  const { message } = toHttpError(err);
  if (err instanceof TimeoutError) {
    const value = `${message}; forkd cannot interrupt the runtime: the code runs on, and later calls wait for it`;
    return failed('TimeoutError', value);
  }
  return failed(
    err instanceof EnvdError && err.status === 404 ? 'NotFoundError' : 'ExecutionFailed',
    message,
  );
}

function failed(name: string, value: string): ExecutionOutcome {
  return { stdout: '', stderr: '', result: null, error: { name, value, traceback: '' }, count: null };
}

// ---- Talking to the runtime ----------------------------------------------

/** The runtime's kind per sandbox: it cannot change while the VM lives. */
const runtimeKinds = new WeakMap<Sandbox, string | null>();

async function runtimeKind(sandbox: Sandbox): Promise<string | null> {
  const known = runtimeKinds.get(sandbox);
  if (known !== undefined) return known;
  const kind = (await sandbox.agent.ping({ timeoutMs: 10_000 })).runtime?.kind ?? null;
  runtimeKinds.set(sandbox, kind);
  return kind;
}

/** Refuses a sandbox that cannot run `language`. */
async function checkRuntime(target: E2bTarget, language: string): Promise<void> {
  const refusal = runtimeRefusal(await runtimeKind(target.sandbox), language);
  if (refusal) throw refusal;
}

/** The sandbox a context call is for, once it is known to run Python. */
async function pythonTarget(req: FastifyRequest, lookup: E2bLookup): Promise<E2bTarget> {
  const target = e2bTarget(req, lookup);
  await checkRuntime(target, 'python');
  return target;
}

function asEnvdError(err: unknown): EnvdError {
  if (err instanceof EnvdError) return err;
  const { status, message } = toHttpError(err);
  return new EnvdError(status, message);
}

/** A context call: the helper's reply, or its refusal thrown. */
async function contextCall(
  sandbox: Sandbox,
  request: HelperRequest,
  reply: FastifyReply,
): Promise<Record<string, unknown>> {
  let r: EvalResult;
  try {
    r = await sandbox.agent.eval(helperCallCode(request), {
      timeoutMs: CONTEXT_CALL_MS,
      signal: clientGone(reply),
    });
  } catch (err) {
    throw asEnvdError(err);
  }
  if (r.error !== null)
    throw new EnvdError(500, `the code interpreter failed: ${parseTraceback(r.error).value}`);
  const answer = r.result;
  if (!isRecord(answer)) throw new EnvdError(500, 'the code interpreter answered nothing');
  if (typeof answer.status === 'number') throw new EnvdError(answer.status, String(answer.message));
  return answer;
}

function contextInfo(v: unknown): ContextInfo {
  const c = isRecord(v) ? v : {};
  return { id: String(c.id), language: String(c.language), cwd: String(c.cwd) };
}

function contextId(id: string): string {
  if (!CONTEXT_ID.test(id)) throw new EnvdError(404, `context ${id} not found`);
  if (id === DEFAULT_CONTEXT)
    throw new EnvdError(
      409,
      "the default context is the sandbox's runtime namespace: it cannot be removed or restarted (create a context for state you want to reset)",
    );
  return id;
}

// ---- Routes --------------------------------------------------------------

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/** Output lines as E2B's stdout/stderr lines. */
function outputLines(lines: readonly SpoolLine[]): string[] {
  const timestamp = new Date().toISOString();
  return lines.map((l) => `${JSON.stringify({ type: l.stream, text: l.text, timestamp })}\n`);
}

/**
 * Streams an execution still running: its output as the cell prints it
 * (read from the spool while the client keeps up), keepalives while it is
 * quiet, then the rest of its output, its result and error.
 */
function streamExecution(
  reply: FastifyReply,
  done: Promise<Settled<EvalResult>>,
  spool: OutputSpool,
  early: readonly SpoolLine[],
): FastifyReply {
  const out = new PassThrough();
  out.on('error', () => undefined);
  const write = (text: string): void => {
    if (!out.destroyed && !out.writableEnded) out.write(text);
  };
  const keepalive = `${JSON.stringify({ type: 'keepalive' })}\n`;
  // The first write sends the headers: the SDK's wait for them ends here.
  if (early.length) outputLines(early).forEach(write);
  else write(keepalive);
  const timer = setInterval(() => write(keepalive), KEEPALIVE_MS);
  void (async () => {
    let finished: Settled<EvalResult> | null = null;
    while (!finished && !out.destroyed) {
      finished = await Promise.race([done, sleep(POLL_MS).then(() => null)]);
      // A client that reads slowly is not sent more: the cell's output waits in the guest's spool.
      if (!finished && !out.writableNeedDrain) outputLines(await spool.poll()).forEach(write);
    }
    clearInterval(timer);
    const s = finished ?? (await done);
    const outcome = s.ok ? outcomeOf(s.value) : failureOutcome(s.error);
    // Past the headers a refusal can only be an error line.
    const o = outcome instanceof EnvdError ? failureOutcome(outcome) : outcome;
    for (const line of executionLines({ ...o, ...spool.rest(o) }, new Date().toISOString())) write(line);
    out.end();
  })();
  return reply.code(200).type(NDJSON).send(out);
}

async function execute(req: FastifyRequest, reply: FastifyReply, lookup: E2bLookup): Promise<FastifyReply> {
  // The sandbox and its token first: nothing about the request is checked for a caller without one.
  const target = e2bTarget(req, lookup);
  const body = parseExecuteBody(req.body);
  await checkRuntime(target, normalizeLanguage(body.language));
  const { record, sandbox } = target;
  const spool = new OutputSpool(sandbox.agent);
  const call = helperCallCode({
    op: 'execute',
    context: body.contextId,
    code: body.code,
    env: body.envVars,
    sandbox_env: record.envs,
    spool: spool.path,
  });
  // A client that goes away stops the wait (the runtime finishes the code on its own).
  const done = settle(sandbox.agent.eval(call, { timeoutMs: MAX_EXECUTION_MS, signal: clientGone(reply) }));
  const commitAt = Date.now() + COMMIT_AFTER_MS;
  for (;;) {
    const first = await Promise.race([done, sleep(POLL_MS).then(() => null)]);
    if (first) {
      // A runtime that failed or died is the execution's error, as a kernel's death is in E2B.
      const outcome = first.ok ? outcomeOf(first.value) : failureOutcome(first.error);
      if (outcome instanceof EnvdError) throw outcome;
      return reply.code(200).type(NDJSON).send(executionLines(outcome, new Date().toISOString()).join(''));
    }
    // The cell printed, so it runs (its context exists): the answer is a stream from here.
    const early = await spool.poll();
    if (early.length > 0 || Date.now() >= commitAt) return streamExecution(reply, done, spool, early);
  }
}

/** The code interpreter's routes under SANDBOX_PREFIX; errors are thrown as EnvdError. */
export function registerCodeInterpreterRoutes(app: App, lookup: E2bLookup): void {
  app.post(`${SANDBOX_PREFIX}/execute`, async (req, reply) => execute(req, reply, lookup));

  app.post(`${SANDBOX_PREFIX}/contexts`, async (req, reply) => {
    const target = e2bTarget(req, lookup);
    const body = isRecord(req.body) ? req.body : {};
    const language = normalizeLanguage(optionalString(body, 'language'));
    const cwd = guestPathOf(optionalString(body, 'cwd') ?? E2B_HOME);
    await checkRuntime(target, language);
    const { sandbox } = target;
    const answer = await contextCall(sandbox, { op: 'create', id: randomUUID(), cwd }, reply);
    return reply.code(200).send(contextInfo(answer.context));
  });

  app.get(`${SANDBOX_PREFIX}/contexts`, async (req, reply) => {
    const { sandbox } = await pythonTarget(req, lookup);
    const answer = await contextCall(sandbox, { op: 'list' }, reply);
    const list = Array.isArray(answer.contexts) ? answer.contexts : [];
    return reply.code(200).send(list.map(contextInfo));
  });

  app.delete<{ Params: { id: string } }>(`${SANDBOX_PREFIX}/contexts/:id`, async (req, reply) => {
    const { sandbox } = await pythonTarget(req, lookup);
    await contextCall(sandbox, { op: 'remove', id: contextId(req.params.id) }, reply);
    return reply.code(204).send();
  });

  app.post<{ Params: { id: string } }>(`${SANDBOX_PREFIX}/contexts/:id/restart`, async (req, reply) => {
    const { sandbox } = await pythonTarget(req, lookup);
    await contextCall(sandbox, { op: 'restart', id: contextId(req.params.id) }, reply);
    return reply.code(204).send();
  });
}
