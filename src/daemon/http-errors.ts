// The one place engine errors become HTTP statuses. Every error body is
// {"error": "<message>"} (API-v1.md), including Fastify's own (bad JSON,
// content type, schema, size).
import type { FastifyError } from 'fastify';
import { ForkdError, HTTP_STATUS } from '../errors.js';

/** An error raised by a route for an HTTP-only reason (not an engine error). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export function toHttpError(err: unknown): { status: number; message: string } {
  if (err instanceof HttpError) return { status: err.status, message: err.message };
  if (err instanceof ForkdError) return { status: HTTP_STATUS[err.code], message: err.oneLine() };
  const f = err as Partial<FastifyError> & { validation?: unknown };
  if (f.validation) return { status: 400, message: `invalid request: ${f.message ?? 'schema violation'}` };
  if (f.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return { status: 415, message: 'content type must be application/json' };
  if (f.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return { status: 413, message: 'request body too large' };
  if (f.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return { status: 400, message: 'empty JSON body' };
  if (typeof f.statusCode === 'number' && f.statusCode >= 400 && f.statusCode < 500) {
    return { status: f.statusCode, message: f.message ?? 'bad request' };
  }
  return { status: 500, message: err instanceof Error ? err.message : String(err) };
}
