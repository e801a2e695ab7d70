// Which sandbox an envd or code-interpreter request is for, and whether it may
// call it. E2B's SDK names the sandbox in the `E2b-Sandbox-Id` header (or in
// the host name, which host-routing.ts turns into that header) and proves it
// with the access token the sandbox was created with: `X-Access-Token`, or
// `E2B-Traffic-Access-Token` on the code interpreter's context calls, which
// carry no other. Tokens are compared in constant time.
import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import type { Sandbox } from '../../engine/index.js';
import type { E2bRecord } from './records.js';

/** Where E2B_SANDBOX_URL points: every envd and interpreter route lives under it. */
export const SANDBOX_PREFIX = '/e2b-sandbox';
/** envd's port in E2B's sandboxes; the SDK names it in `E2b-Sandbox-Port`. */
export const ENVD_PORT = 49983;
/** The code interpreter's port. */
export const INTERPRETER_PORT = 49999;
/** The envd version this layer speaks: what the SDK gates its features on. */
export const ENVD_VERSION = '0.5.7';
/** E2B's default user's home: relative paths and a command's default cwd. */
export const E2B_HOME = '/home/user';

/** A refusal in E2B's envd shape: HTTP status plus `{code, message}`. */
export class EnvdError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface E2bTarget {
  record: E2bRecord;
  /** The running forkd sandbox behind it. */
  sandbox: Sandbox;
  /** The port the SDK asked for (`E2b-Sandbox-Port`). */
  port: number;
}

/** Looks up E2B records and their live sandboxes; implemented by E2bSandboxes. */
export interface E2bLookup {
  record(id: string): E2bRecord | null;
  liveSandbox(record: E2bRecord): Sandbox | null;
}

export function sameToken(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * The sandbox a request is for. 400 without the id header, 502 for an
 * unknown, paused or dead sandbox (what E2B's proxy answers, and what the
 * SDK reads as "sandbox not running"), 401 without a matching token.
 */
export function e2bTarget(req: FastifyRequest, lookup: E2bLookup): E2bTarget {
  const id = header(req, 'e2b-sandbox-id');
  if (!id)
    throw new EnvdError(
      400,
      'missing E2b-Sandbox-Id header (set E2B_SANDBOX_URL with eval "$(forkd e2b env)")',
    );
  const portText = header(req, 'e2b-sandbox-port') ?? String(ENVD_PORT);
  const port = Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new EnvdError(400, `bad E2b-Sandbox-Port ${JSON.stringify(portText)}`);
  const record = lookup.record(id);
  // 502, as E2B's proxy answers for a sandbox that is gone: the SDK reads it as "not running".
  if (!record) throw new EnvdError(502, `sandbox ${id} not found: it was killed or reached its deadline`);
  const ok =
    sameToken(req.headers['x-access-token'], record.envdAccessToken) ||
    sameToken(req.headers['e2b-traffic-access-token'], record.trafficAccessToken);
  if (!ok) throw new EnvdError(401, `missing or wrong access token for sandbox ${id}`);
  const sandbox = lookup.liveSandbox(record);
  if (!sandbox) throw new EnvdError(502, `sandbox ${id} is not running (state ${record.state})`);
  return { record, sandbox, port };
}

/** A guest path from an E2B path: relative paths are under the user's home. */
export function guestPathOf(path: string): string {
  if (path === '') return E2B_HOME;
  if (path.startsWith('/')) return path;
  if (path.startsWith('~/')) return `${E2B_HOME}/${path.slice(2)}`;
  if (path === '~') return E2B_HOME;
  return `${E2B_HOME}/${path}`;
}
