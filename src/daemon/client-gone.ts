// A request's cancellation: a client that closes its connection before the
// answer was sent cancels the agent call it was waiting for.
import type { FastifyReply } from 'fastify';

/** Aborts when the client closes the connection before its answer was sent. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort(new Error('the client went away'));
  });
  return controller.signal;
}
