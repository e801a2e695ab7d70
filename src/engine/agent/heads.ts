// Turns the JSON heads of agent responses (snake_case, untyped) into the typed
// results of the client API, checking each field so a misbehaving agent
// surfaces as an AgentError instead of undefined values deep in a caller.
import { AgentError } from '../../errors.js';
import type { EvalResult, FileInfo, FileType, HygieneResult, PingResult, RuntimeStatus } from './types.js';

type Head = Record<string, unknown>;

function bad(what: string, head: Head): AgentError {
  return new AgentError(`agent sent a malformed ${what}: ${JSON.stringify(head).slice(0, 200)}`);
}

function num(head: Head, key: string, what: string): number {
  const v = head[key];
  if (typeof v !== 'number') throw bad(what, head);
  return v;
}

function strOrNull(head: Head, key: string, what: string): string | null {
  const v = head[key];
  if (v === null || v === undefined) return null;
  if (typeof v !== 'string') throw bad(what, head);
  return v;
}

function bool(head: Head, key: string, what: string): boolean {
  const v = head[key];
  if (typeof v !== 'boolean') throw bad(what, head);
  return v;
}

function isHead(v: unknown): v is Head {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The AgentError for an ERROR response: `{errno, code?, message}`. */
export function agentErrorFromHead(head: Head): AgentError {
  const message = typeof head.message === 'string' ? head.message : 'agent error';
  const errno = typeof head.errno === 'number' && head.errno !== 0 ? head.errno : undefined;
  const code = typeof head.code === 'string' ? head.code : undefined;
  return new AgentError(code ? `${message} (${code})` : message, errno);
}

function runtimeFromHead(v: unknown, head: Head): RuntimeStatus | null {
  if (v === null || v === undefined) return null;
  if (!isHead(v) || typeof v.kind !== 'string' || typeof v.ready !== 'boolean') throw bad('ping', head);
  const state = v.state === 'starting' || v.state === 'failed' ? v.state : v.ready ? 'ready' : 'starting';
  const status: RuntimeStatus = { kind: v.kind, state, ready: v.ready };
  if (typeof v.error === 'string') status.error = v.error;
  return status;
}

export function pingFromHead(head: Head): PingResult {
  return {
    version: num(head, 'version', 'ping'),
    agent: typeof head.agent === 'string' ? head.agent : 'unknown',
    runtime: runtimeFromHead(head.runtime, head),
    uptimeMs: num(head, 'uptime_ms', 'ping'),
    pid: num(head, 'pid', 'ping'),
  };
}

export function hygieneFromHead(head: Head): HygieneResult {
  return { clockSet: head.clock_set === true, entropyCredited: head.entropy_credited === true };
}

export interface ExitHead {
  exitCode: number;
  signal: string | null;
  timedOut: boolean;
}

export function exitFromHead(head: Head): ExitHead {
  const sig = head.signal;
  return {
    exitCode: num(head, 'exit_code', 'exit'),
    signal: typeof sig === 'number' ? String(sig) : strOrNull(head, 'signal', 'exit'),
    timedOut: bool(head, 'timed_out', 'exit'),
  };
}

/** Deepest eval result passed on as JSON: serialising deeper values recurses past the stack. */
export const MAX_RESULT_DEPTH = 256;

/** Whether a parsed JSON value nests deeper than `max` (checked without recursion). */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

export function evalFromHead(head: Head): EvalResult {
  const value = head.result ?? null;
  const out: EvalResult = {
    // Too deep to pass on as JSON: the caller still has repr().
    result: nestsDeeperThan(value, MAX_RESULT_DEPTH) ? null : value,
    repr: strOrNull(head, 'repr', 'eval result'),
    error: strOrNull(head, 'error', 'eval result'),
    exitCode: num(head, 'exit_code', 'eval result'),
  };
  const stdout = strOrNull(head, 'stdout', 'eval result');
  const stderr = strOrNull(head, 'stderr', 'eval result');
  if (stdout !== null) out.stdout = stdout;
  if (stderr !== null) out.stderr = stderr;
  return out;
}

const fileTypes: readonly FileType[] = ['file', 'dir', 'symlink', 'other'];

export function fileInfoFromHead(v: unknown): FileInfo {
  if (!isHead(v) || typeof v.name !== 'string' || !fileTypes.includes(v.type as FileType)) {
    throw bad('file info', isHead(v) ? v : { value: v });
  }
  return {
    name: v.name,
    type: v.type as FileType,
    size: num(v, 'size', 'file info'),
    mode: num(v, 'mode', 'file info'),
    mtimeMs: num(v, 'mtime_ms', 'file info'),
  };
}

export function listFromHead(head: Head): FileInfo[] {
  if (!Array.isArray(head.entries)) throw bad('directory listing', head);
  return head.entries.map((e: unknown) => fileInfoFromHead(e));
}

/** FILE_READ slice metadata. */
export function readSliceFromHead(head: Head): { size: number; length: number } {
  return { size: num(head, 'size', 'file read'), length: num(head, 'length', 'file read') };
}
