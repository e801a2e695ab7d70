// The SDK's error classes and the one place they are rebuilt from what the
// daemon sent. Two families, as in the MCP SDK: ControllerError and its
// subclasses came over the wire (the daemon's `{error, code}` body and its
// status); CommandExitError and SandboxEvalError are results the caller asked
// to have thrown. Every one has a `code`, so callers branch on the class or
// the code, never on the message.

/** What the daemon's answer said, beside the message. */
export interface ControllerErrorDetails {
  /** HTTP status of the response (200 for an error reported mid-stream). */
  status: number;
  /** The body's `code`; CLASS_OF_CODE below says which class each one gets. */
  code: string;
  /** The parsed JSON body (`{"error", "code"}` for the daemon's own errors), or its text. */
  body: unknown;
  /** The request URL, without credentials. */
  url: string;
}

/** The daemon answered with an error (a non-2xx status, or an error event mid-stream). */
export class ControllerError extends Error {
  // Spelled out per class, not new.target.name: bundlers rename classes.
  override name = 'ControllerError';
  /** HTTP status of the response (200 for an error reported mid-stream). */
  readonly status: number;
  /**
   * The kind of error, e.g. `not_found`, `conflict`, `timeout`: the daemon's
   * code, or for an answer without one (an original forkd, a proxy) the code
   * the daemon gives that status.
   */
  readonly code: string;
  /** The parsed JSON body (`{"error", "code"}` for the daemon's own errors), or its text. */
  readonly body: unknown;
  /** The request URL, without credentials. */
  readonly url: string;

  constructor(message: string, details: ControllerErrorDetails) {
    super(message);
    this.status = details.status;
    this.code = details.code;
    this.body = details.body;
    this.url = details.url;
  }
}

/** 400: the request is malformed (`invalid_argument`; also 415 `unsupported_media_type`). */
export class InvalidArgumentError extends ControllerError {
  override name = 'InvalidArgumentError';
}

/** 401: no bearer token, or the wrong one (`unauthorized`). */
export class UnauthorizedError extends ControllerError {
  override name = 'UnauthorizedError';
}

/** 403: refused (`forbidden`, e.g. a guest path; `untrusted`, an unsigned or unknown-key pack). */
export class ForbiddenError extends ControllerError {
  override name = 'ForbiddenError';
}

/** 404: no such sandbox, snapshot, workspace, command or file (`not_found`). */
export class NotFoundError extends ControllerError {
  override name = 'NotFoundError';
}

/**
 * 409: the resource's state forbids the request. `code` tells which:
 * `conflict` (busy, not ready, in use), `already_exists`, `incompatible`
 * (made by another QEMU or machine), `corrupt` (damaged on disk).
 */
export class ConflictError extends ControllerError {
  override name = 'ConflictError';
}

/** 409 `already_exists`: the tag or name is taken. */
export class AlreadyExistsError extends ConflictError {
  override name = 'AlreadyExistsError';
}

/** 413: the request, or what the guest sent back, is over a limit (`too_large`). */
export class TooLargeError extends ControllerError {
  override name = 'TooLargeError';
}

/** 499: the daemon stopped the operation before it finished (`aborted`). */
export class AbortedError extends ControllerError {
  override name = 'AbortedError';
}

/** 502: the sandbox's guest agent cannot be reached or broke its protocol (`agent_unavailable`). */
export class AgentUnavailableError extends ControllerError {
  override name = 'AgentUnavailableError';
}

/** 503: the host is out of something (memory, the branch cap) (`resource_exhausted`). */
export class ResourceExhaustedError extends ControllerError {
  override name = 'ResourceExhaustedError';
}

/**
 * 504: the daemon gave up waiting (`timeout`). Not the DOMException a
 * request's own `timeoutMs` rejects with, though both are named TimeoutError.
 */
export class TimeoutError extends ControllerError {
  override name = 'TimeoutError';
}

/** 507: the guest's or the host's disk is full (`insufficient_storage`). */
export class InsufficientStorageError extends ControllerError {
  override name = 'InsufficientStorageError';
}

type ControllerErrorClass = new (message: string, details: ControllerErrorDetails) => ControllerError;

/**
 * The class for each code the daemon sends. Codes not listed here that a
 * newer daemon may send are classed by status; the daemon's own 500s
 * (`internal`, `vm_exited`, `qmp_error`, `agent_error`,
 * `missing_dependency`) and `remote` (a hub failed) stay plain ControllerErrors.
 * A Map, so a body's code such as "constructor" finds nothing.
 */
const CLASS_OF_CODE = new Map<string, ControllerErrorClass>([
  ['invalid_argument', InvalidArgumentError],
  ['unsupported_media_type', InvalidArgumentError],
  ['unauthorized', UnauthorizedError],
  ['forbidden', ForbiddenError],
  ['untrusted', ForbiddenError],
  ['not_found', NotFoundError],
  ['conflict', ConflictError],
  ['incompatible', ConflictError],
  ['corrupt', ConflictError],
  ['already_exists', AlreadyExistsError],
  ['too_large', TooLargeError],
  ['aborted', AbortedError],
  ['agent_unavailable', AgentUnavailableError],
  ['resource_exhausted', ResourceExhaustedError],
  ['timeout', TimeoutError],
  ['insufficient_storage', InsufficientStorageError],
  ['internal', ControllerError],
  ['vm_exited', ControllerError],
  ['qmp_error', ControllerError],
  ['agent_error', ControllerError],
  ['missing_dependency', ControllerError],
  ['remote', ControllerError],
]);

/** The code the daemon gives a status when no engine error names one (src/daemon/http-errors.ts). */
const CODE_OF_STATUS = new Map<number, string>([
  [400, 'invalid_argument'],
  [401, 'unauthorized'],
  [403, 'forbidden'],
  [404, 'not_found'],
  [409, 'conflict'],
  [413, 'too_large'],
  [415, 'unsupported_media_type'],
  [499, 'aborted'],
  [502, 'agent_unavailable'],
  [503, 'resource_exhausted'],
  [504, 'timeout'],
  [507, 'insufficient_storage'],
]);

/**
 * The one builder of daemon errors, for error responses and mid-stream error
 * events alike: the class comes from `code`, or from the status when the
 * code is missing or unknown to this SDK (the code itself is kept).
 */
export function controllerError(
  message: string,
  answer: { status: number; code: string | undefined; body: unknown; url: string },
): ControllerError {
  const byStatus = CODE_OF_STATUS.get(answer.status);
  const code = answer.code ?? byStatus ?? 'internal';
  const Class = CLASS_OF_CODE.get(code) ?? (byStatus === undefined ? undefined : CLASS_OF_CODE.get(byStatus));
  const details = { status: answer.status, code, body: answer.body, url: withoutCredentials(answer.url) };
  return new (Class ?? ControllerError)(message, details);
}

/** A non-2xx response as its error: the body's `error` and `code` when present, else the status line. */
export async function errorFromResponse(res: Response, url: string): Promise<ControllerError> {
  const text = await res.text().catch(() => '');
  let body: unknown = text;
  try {
    body = text ? (JSON.parse(text) as unknown) : null;
  } catch {
    // not JSON (a proxy's page): keep the text
  }
  const message =
    stringField(body, 'error') ??
    `${res.status} ${res.statusText || 'error'} from ${withoutCredentials(url)}`;
  return controllerError(message, { status: res.status, code: stringField(body, 'code'), body, url });
}

/** An `{"type": "error"}` event in a 200 NDJSON stream as its error. */
export function errorFromEvent(event: { error: string }, url: string): ControllerError {
  return controllerError(event.error, { status: 200, code: stringField(event, 'code'), body: event, url });
}

function stringField(body: unknown, key: 'error' | 'code'): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const value = (body as Record<string, unknown>)[key];
  return typeof value === 'string' ? value : undefined;
}

/** A command ended with a non-zero exit code; its output is kept. Never sent by the daemon. */
export class CommandExitError extends Error {
  override readonly name = 'CommandExitError';
  /** Beside the daemon's codes, so a catch-all can branch on `code` alone. */
  readonly code = 'command_exit';
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The signal that ended the command, if any (e.g. `"SIGKILL"`). */
  readonly signal: string | null;
  /** True when the daemon killed the command at its timeout. */
  readonly timedOut: boolean;

  constructor(result: {
    exitCode: number;
    stdout: string;
    stderr: string;
    signal?: string | null;
    timedOut?: boolean;
  }) {
    const how = result.timedOut
      ? 'timed out'
      : result.signal !== null && result.signal !== undefined
        ? `was killed by ${result.signal}`
        : `exited with code ${result.exitCode}`;
    const tail = result.stderr.trim().split('\n').slice(-3).join('\n');
    super(`command ${how}${tail ? `: ${tail}` : ''}`);
    this.exitCode = result.exitCode;
    this.stdout = result.stdout;
    this.stderr = result.stderr;
    this.signal = result.signal ?? null;
    this.timedOut = result.timedOut ?? false;
  }
}

/** Code evaluated in a sandbox raised; `traceback` is the guest's error text. */
export class SandboxEvalError extends Error {
  override readonly name = 'SandboxEvalError';
  /** Beside the daemon's codes, as CommandExitError's. */
  readonly code = 'eval_error';
  readonly traceback: string;
  readonly exitCode: number;

  constructor(traceback: string, exitCode: number) {
    const lines = traceback.trim().split('\n');
    super(lines[lines.length - 1] || 'evaluation failed');
    this.traceback = traceback;
    this.exitCode = exitCode;
  }
}

/** `url` without any `user:password@` part, fit for messages and logs. */
export function withoutCredentials(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.username && !parsed.password) return url;
    parsed.username = '';
    parsed.password = '';
    return parsed.toString();
  } catch {
    return url;
  }
}
