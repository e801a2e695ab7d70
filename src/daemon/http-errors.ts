// The one place engine errors become HTTP statuses. Every error body is
// {"error": "<message>", "code": "<kind>"} (API-v1.md's error plus a stable
// code), including Fastify's own (bad JSON, content type, schema, size).
import type { FastifyError } from 'fastify';
import { constants } from 'node:os';
import { AgentError, codeForStatus, ForkdError, HTTP_STATUS } from '../errors.js';

/** An error raised by a route for an HTTP-only reason (not an engine error). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const E = constants.errno;

/**
 * A guest's errno says whose fault a failed call was: a missing file or
 * command, a path the guest refuses, a bad argument are the caller's (4xx);
 * only what is left is the daemon's 500.
 */
const GUEST_ERRNO_STATUS = new Map<number, number>([
  [E.ENOENT, 404],
  [E.ESRCH, 404],
  [E.EACCES, 403],
  [E.EPERM, 403],
  [E.EINVAL, 400],
  [E.ENAMETOOLONG, 400],
  [E.E2BIG, 400],
  [E.ELOOP, 400],
  [E.ENOEXEC, 400],
  [E.EEXIST, 409],
  [E.ENOTDIR, 409],
  [E.EISDIR, 409],
  [E.ENOTEMPTY, 409],
  [E.EBUSY, 409],
  [E.ETXTBSY, 409],
  [E.EROFS, 409],
  // The agent's "this image has no eval runtime": the sandbox, not the daemon, lacks it.
  [E.ENOSYS, 409],
  [E.EXDEV, 409],
  [E.EFBIG, 413],
  [E.ENOSPC, 507],
  [E.EDQUOT, 507],
  [E.ENOMEM, 503],
]);

export interface HttpErrorBody {
  status: number;
  message: string;
  /** A stable name for the kind of error (the engine's code where there is one). */
  code: string;
}

function byStatus(status: number, message: string): HttpErrorBody {
  return { status, message, code: codeForStatus(status) };
}

export function toHttpError(err: unknown): HttpErrorBody {
  if (err instanceof HttpError) return byStatus(err.status, err.message);
  if (err instanceof AgentError && err.errno !== undefined) {
    return byStatus(GUEST_ERRNO_STATUS.get(err.errno) ?? 500, err.oneLine());
  }
  if (err instanceof ForkdError)
    return { status: HTTP_STATUS[err.code], message: err.oneLine(), code: err.code };
  const f = err as Partial<FastifyError> & { validation?: unknown };
  if (f.validation) return byStatus(400, `invalid request: ${f.message ?? 'schema violation'}`);
  if (f.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return byStatus(415, 'content type must be application/json');
  if (f.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return byStatus(413, 'request body too large');
  if (f.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return byStatus(400, 'empty JSON body');
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return byStatus(f.statusCode, f.message ?? 'bad request');
  }
  return byStatus(500, err instanceof Error ? err.message : String(err));
}
