// What the client keeps per in-flight request, and how errors get the
// caller's stack: the Error is captured when the call is made, because by the
// time the agent answers the stack would only show the socket's data handler.
import type { FieldList, RequestType } from './protocol.js';

/** Receives the response frames of one request id. */
export interface FrameSink {
  onFrame(type: number, head: Record<string, unknown>, body: Buffer): void;
  /** The channel closed or broke before the request finished. */
  fail(err: Error): void;
}

/** The part of the client an exec run needs: ids, frames out, and its sink. */
export interface AgentTransport {
  /** Allocates an id and routes that id's frames to `sink`; throws AgentError if closed. */
  register(sink: FrameSink): number;
  unregister(id: number): void;
  /** Sends a request frame; throws AgentError if the channel is closed. */
  send(id: number, type: RequestType, fields: FieldList): void;
  /** Acknowledges `bytes` of exec `id`'s output (lets the agent send that much more). */
  credit(id: number, bytes: number): void;
  readonly closed: boolean;
}

/** A marker capturing the caller's stack, to be grafted onto a later error. */
export function callSite(): Error {
  return new Error('call site');
}

/** Replaces err's stack frames with the call site's, keeping its message line. */
export function withCallSite<E extends Error>(err: E, site: Error): E {
  const frames = site.stack?.split('\n').slice(1).join('\n');
  if (frames && !Object.prototype.hasOwnProperty.call(err, 'callSiteApplied')) {
    err.stack = `${err.name}: ${err.message}\n${frames}`;
    Object.defineProperty(err, 'callSiteApplied', { value: true });
  }
  return err;
}
