// Requests for any other port of an E2B sandbox (`sandbox.getHost(port)`,
// routed by host name, or the sandbox URL with `E2b-Sandbox-Port`) are
// passed to that port on the guest's loopback through the agent's relay:
// the guest gets no network and the host opens no port. As on E2B, a
// sandbox's ports are public unless it was created with
// `allowPublicTraffic: false`, which asks for its traffic token. Bodies
// stream both ways with backpressure (pipe through the relay's window).
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { connectGuestPort } from '../../engine/guest-port.js';
import { toHttpError } from '../http-errors.js';
import type { E2bSandboxes } from './sandboxes.js';
import { ENVD_PORT, EnvdError, INTERPRETER_PORT, SANDBOX_PREFIX, sameToken } from './target.js';

/** A proxied exchange idle this long is cut (E2B's proxy has an idle timeout too). */
const IDLE_TIMEOUT_MS = 5 * 60_000;
/** Headers that are the daemon's or E2B's business, never the guest server's. */
const DROPPED = new Set([
  'host',
  'authorization',
  'x-access-token',
  'e2b-traffic-access-token',
  'e2b-sandbox-id',
  'e2b-sandbox-port',
  'connection',
  'keep-alive',
]);

/** The port a sandbox request is for, when it is a user port (not envd's, not the interpreter's). */
export function userPortOf(req: IncomingMessage): number | null {
  if (!req.url?.startsWith(`${SANDBOX_PREFIX}/`)) return null;
  const port = Number(req.headers['e2b-sandbox-port']);
  if (!Number.isInteger(port) || port === ENVD_PORT || port === INTERPRETER_PORT) return null;
  return port;
}

function guestHeaders(headers: IncomingHttpHeaders, port: number): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = { host: `127.0.0.1:${port}` };
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && !DROPPED.has(name)) out[name] = value;
  }
  return out;
}

function refuse(reply: FastifyReply, err: unknown): void {
  const { status, message } = err instanceof EnvdError ? err : toHttpError(err);
  if (reply.raw.headersSent) {
    reply.raw.destroy();
    return;
  }
  const body = JSON.stringify({ code: status, message });
  reply.raw.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  reply.raw.end(body);
}

/** Takes the request over and answers it from the guest's port. */
export function proxyToUserPort(
  req: FastifyRequest,
  reply: FastifyReply,
  sandboxes: E2bSandboxes,
  port: number,
): void {
  void reply.hijack();
  try {
    const id = String(req.headers['e2b-sandbox-id'] ?? '');
    const record = sandboxes.record(id);
    if (!record) throw new EnvdError(502, `sandbox ${id} not found: it was killed or reached its deadline`);
    if (
      !record.publicTraffic &&
      !sameToken(req.headers['e2b-traffic-access-token'], record.trafficAccessToken)
    )
      throw new EnvdError(
        403,
        `sandbox ${id} is not public: send its traffic token in E2B-Traffic-Access-Token`,
      );
    const sandbox = sandboxes.liveSandbox(record);
    if (!sandbox) throw new EnvdError(502, `sandbox ${id} is not running (state ${record.state})`);
    const path = (req.raw.url ?? '/').slice(SANDBOX_PREFIX.length) || '/';
    const upstream = httpRequest({
      method: req.raw.method,
      path,
      headers: guestHeaders(req.headers, port),
      createConnection: () => connectGuestPort(sandbox.agent, port, `sandbox ${id}`),
      timeout: IDLE_TIMEOUT_MS,
    });
    upstream.on('response', (res) => {
      reply.raw.writeHead(res.statusCode ?? 502, res.headers);
      res.pipe(reply.raw);
    });
    upstream.on('timeout', () =>
      upstream.destroy(new EnvdError(504, `port ${port} answered nothing for ${IDLE_TIMEOUT_MS} ms`)),
    );
    upstream.on('error', (err) => refuse(reply, err));
    reply.raw.on('close', () => upstream.destroy());
    req.raw.pipe(upstream);
  } catch (err) {
    refuse(reply, err);
  }
}
