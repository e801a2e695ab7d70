// The error hierarchy shared by every engine component. Callers branch on the
// class (or on `code`), never on message text; each class carries the data a
// caller needs to act. The daemon maps these to HTTP status codes in one place.

export type ForkdErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'timeout'
  | 'aborted'
  | 'vm_exited'
  | 'qmp_error'
  | 'agent_error'
  | 'agent_unavailable'
  | 'incompatible'
  | 'corrupt'
  | 'resource_exhausted'
  | 'too_large'
  | 'untrusted'
  | 'missing_dependency'
  | 'remote'
  | 'internal';

export interface ForkdErrorOptions {
  cause?: unknown;
  /** A one-line suggestion of what to do about it, shown after the message. */
  hint?: string;
}

export class ForkdError extends Error {
  readonly code: ForkdErrorCode;
  readonly hint: string | undefined;

  constructor(code: ForkdErrorCode, message: string, options: ForkdErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = options.hint;
  }

  /** Message plus hint, on one line: what the CLI prints. */
  oneLine(): string {
    return this.hint ? `${this.message} (${this.hint})` : this.message;
  }
}

export class InvalidArgumentError extends ForkdError {
  constructor(
    message: string,
    readonly argument?: string,
    options?: ForkdErrorOptions,
  ) {
    super('invalid_argument', message, options);
  }
}

export class NotFoundError extends ForkdError {
  constructor(
    message: string,
    readonly resource: { kind: string; name: string },
    options?: ForkdErrorOptions,
  ) {
    super('not_found', message, options);
  }
}

export class AlreadyExistsError extends ForkdError {
  constructor(
    message: string,
    readonly resource: { kind: string; name: string },
    options?: ForkdErrorOptions,
  ) {
    super('already_exists', message, options);
  }
}

/** The resource exists but is in a state that forbids the request (not ready, locked, has dependents). */
export class ConflictError extends ForkdError {
  constructor(message: string, options?: ForkdErrorOptions) {
    super('conflict', message, options);
  }
}

/** Nothing listens on a sandbox port the caller asked to reach. */
export class PortClosedError extends ConflictError {
  constructor(
    message: string,
    readonly port: number,
    options?: ForkdErrorOptions,
  ) {
    super(message, options);
  }
}

export class TimeoutError extends ForkdError {
  constructor(
    message: string,
    readonly timeoutMs: number,
    options?: ForkdErrorOptions,
  ) {
    super('timeout', message, options);
  }
}

export class AbortedError extends ForkdError {
  constructor(message = 'operation aborted', options?: ForkdErrorOptions) {
    super('aborted', message, options);
  }
}

/** QEMU exited (or was never able to start); carries the tail of its log. */
export class VmExitedError extends ForkdError {
  constructor(
    message: string,
    readonly exit: { code: number | null; signal: string | null },
    readonly logTail: string,
    options?: ForkdErrorOptions,
  ) {
    super('vm_exited', message, options);
  }
}

export class QmpError extends ForkdError {
  constructor(
    message: string,
    readonly command: string,
    readonly qmpClass: string | undefined,
    options?: ForkdErrorOptions,
  ) {
    super('qmp_error', message, options);
  }
}

/** The guest agent answered with an error, or its channel broke. */
export class AgentError extends ForkdError {
  constructor(
    message: string,
    readonly errno?: number,
    options?: ForkdErrorOptions,
  ) {
    super('agent_error', message, options);
  }
}

/** The agent's channel broke (the guest sent bytes that are not the protocol); `reason` says how. */
export class AgentUnavailableError extends ForkdError {
  constructor(
    message: string,
    readonly reason: string,
    options?: ForkdErrorOptions,
  ) {
    super('agent_unavailable', message, options);
  }
}

/** A snapshot or pack was made by a QEMU / machine that this host cannot restore. */
export class IncompatibleError extends ForkdError {
  constructor(
    message: string,
    readonly expected: string,
    readonly actual: string,
    options?: ForkdErrorOptions,
  ) {
    super('incompatible', message, options);
  }
}

/** A file on disk is not what its manifest says (truncated, wrong hash, bad format). */
export class CorruptError extends ForkdError {
  constructor(
    message: string,
    readonly path: string,
    options?: ForkdErrorOptions,
  ) {
    super('corrupt', message, options);
  }
}

export class ResourceExhaustedError extends ForkdError {
  constructor(message: string, options?: ForkdErrorOptions) {
    super('resource_exhausted', message, options);
  }
}

/** Something a guest sent (a file, a result) is larger than the host takes. */
export class TooLargeError extends ForkdError {
  constructor(
    message: string,
    readonly limitBytes: number,
    options?: ForkdErrorOptions,
  ) {
    super('too_large', message, options);
  }
}

/** A pack is unsigned, or signed by a key this host does not trust, or its signature does not match. */
export class UntrustedPackError extends ForkdError {
  constructor(
    message: string,
    /** The signer's key id, or null for an unsigned pack. */
    readonly keyId: string | null,
    options?: ForkdErrorOptions,
  ) {
    super('untrusted', message, options);
  }
}

/** A host program or file forkd needs is missing; the hint says how to install it. */
export class MissingDependencyError extends ForkdError {
  constructor(
    message: string,
    readonly dependency: string,
    options?: ForkdErrorOptions,
  ) {
    super('missing_dependency', message, options);
  }
}

/** A hub or object store answered with an error, or could not be reached. */
export class RemoteError extends ForkdError {
  constructor(
    message: string,
    readonly url: string,
    /** The HTTP status, or null when no answer came. */
    readonly status: number | null,
    options?: ForkdErrorOptions,
  ) {
    super('remote', message, options);
  }
}

/** The HTTP status that stands for each error code (the daemon and the hub server answer with it). */
export const HTTP_STATUS: Readonly<Record<ForkdErrorCode, number>> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  incompatible: 409,
  corrupt: 409,
  timeout: 504,
  aborted: 499,
  vm_exited: 500,
  qmp_error: 500,
  agent_error: 500,
  agent_unavailable: 502,
  resource_exhausted: 503,
  too_large: 413,
  untrusted: 403,
  missing_dependency: 500,
  remote: 502,
  internal: 500,
};

/** The code an error body carries for a status, when no engine error names one. */
export const STATUS_CODE: Readonly<Record<number, string>> = {
  400: 'invalid_argument',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'too_large',
  415: 'unsupported_media_type',
  499: 'aborted',
  502: 'agent_unavailable',
  503: 'resource_exhausted',
  504: 'timeout',
  507: 'insufficient_storage',
};

/** The code of an error body for a status, when no forkd error names one (HTTP-level refusals, others' errors). */
export function codeForStatus(status: number): string {
  return STATUS_CODE[status] ?? 'internal';
}

export function errorMessage(err: unknown): string {
  if (err instanceof ForkdError) return err.oneLine();
  if (err instanceof Error) return err.message;
  return String(err);
}
