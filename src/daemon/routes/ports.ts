// A sandbox's own ports, reached through the daemon: WebSocket upgrades to
// /v1/sandboxes/:id/ports/:port/<path> are passed, bytes for bytes, to
// 127.0.0.1:<port> inside the guest over the agent's relay (no guest network,
// no host port), and GET /v1/sandboxes/:id/browser says where a browser
// sandbox's CDP endpoint is on that path. Upgrades bypass Fastify, so the
// bearer check, the audit line and error bodies are done here by hand.
import type { IncomingMessage, Server } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { BROWSER_CDP_PORT, browserTargetPath, checkGuestPort, connectGuestPort } from '../../engine/index.js';
import { BrowserInfo, ErrorBody, IdParams } from '../../api/schemas.js';
import type { AuditEntry } from '../audit.js';
import { checkBearer } from '../auth.js';
import type { App, DaemonContext } from '../context.js';
import { HttpError, toHttpError } from '../http-errors.js';

const PORT_PATH = /^\/v1\/sandboxes\/([^/?]+)\/ports\/(\d{1,5})(\/[^?]*)?(\?.*)?$/;
/** Request headers that are the daemon's business, not the guest server's. */
const DAEMON_HEADERS = new Set(['host', 'authorization']);

export function cdpPath(sandboxId: string, targetPath: string): string {
  return `/v1/sandboxes/${sandboxId}/ports/${BROWSER_CDP_PORT}${targetPath}`;
}

export function registerPortRoutes(app: App, ctx: DaemonContext, secure: boolean): void {
  app.get(
    '/v1/sandboxes/:id/browser',
    { schema: { params: IdParams, response: { 200: BrowserInfo, 404: ErrorBody, 409: ErrorBody } } },
    async (req) => {
      const sandbox = ctx.registry.get(req.params.id);
      const path = cdpPath(sandbox.id, await browserTargetPath(sandbox.agent, `sandbox ${sandbox.id}`));
      const host = req.headers.host ?? 'localhost';
      return {
        cdp_url: `${secure ? 'wss' : 'ws'}://${host}${path}`,
        cdp_path: path,
        guest_port: BROWSER_CDP_PORT,
      };
    },
  );
}

export interface PortUpgradeOptions {
  ctx: DaemonContext;
  token: string | null;
  audit(entry: AuditEntry): void;
  /** The audit line's `remote` for a connection. */
  remoteOf(req: IncomingMessage): string;
}

/** The request head for the guest server: its own Host, no daemon credentials. */
function guestRequestHead(req: IncomingMessage, port: number, path: string): string {
  const lines = [`${req.method ?? 'GET'} ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i] ?? '';
    if (!DAEMON_HEADERS.has(name.toLowerCase())) lines.push(`${name}: ${raw[i + 1] ?? ''}`);
  }
  return lines.join('\r\n') + '\r\n\r\n';
}

function refuse(socket: Duplex, err: unknown): number {
  const { status, message, code } = toHttpError(err);
  const body = JSON.stringify({ error: message, code });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  return status;
}

/**
 * Serves port upgrades on the daemon's server; returns what closes the
 * connections still open (upgraded sockets are no longer the server's to close).
 */
export function attachPortUpgrades(server: Server | HttpsServer, opts: PortUpgradeOptions): () => void {
  const open = new Set<Duplex>();
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const started = process.hrtime.bigint();
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    let logged = false;
    const log = (status: number): void => {
      if (logged) return;
      logged = true;
      opts.audit({
        ts: new Date().toISOString(),
        method: req.method ?? 'GET',
        path,
        status,
        latency_us: Number((process.hrtime.bigint() - started) / 1000n),
        ua: req.headers['user-agent'] ?? null,
        remote: opts.remoteOf(req),
      });
    };
    socket.on('error', () => socket.destroy());
    try {
      if (opts.token) checkBearer(req.headers.authorization, opts.token);
      const match = PORT_PATH.exec(req.url ?? '');
      if (!match) throw new HttpError(404, `no route for upgrade to ${path}`);
      const sandbox = opts.ctx.registry.get(decodeURIComponent(match[1] ?? ''));
      const port = checkGuestPort(Number(match[2]));
      const guest = connectGuestPort(sandbox.agent, port, `sandbox ${sandbox.id}`);
      open.add(socket);
      let answered = false;
      guest.on('data', (chunk: Buffer) => {
        if (!answered)
          log(Number(/^HTTP\/1\.[01] (\d{3})/.exec(chunk.toString('latin1', 0, 16))?.[1] ?? 502));
        answered = true;
      });
      guest.on('error', (err) => {
        if (!answered && socket.writable) log(refuse(socket, err));
        else socket.destroy();
      });
      guest.on('close', () => {
        open.delete(socket);
        if (!answered) return;
        socket.end();
      });
      socket.on('close', () => {
        open.delete(socket);
        guest.destroy();
      });
      guest.write(guestRequestHead(req, port, `${match[3] ?? '/'}${match[4] ?? ''}`));
      if (head.length) guest.write(head);
      socket.pipe(guest);
      guest.pipe(socket);
    } catch (err) {
      log(refuse(socket, err));
    }
  });
  return () => {
    for (const socket of open) socket.destroy();
  };
}
