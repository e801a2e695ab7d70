// Where a browser sandbox's DevTools endpoint is: the browser runtime
// (guest/runtime/browser.js) starts Chromium with CDP on the guest's
// 127.0.0.1:9222, and Chromium names its browser target in /json/version.
// Asked over a guest-port relay, so the guest's answer is bounded and
// deadlined like any other: it is a hostile guest's HTTP server.
import { request } from 'node:http';
import { ConflictError, PortClosedError, TimeoutError } from '../errors.js';
import type { AgentClient } from './agent/client.js';
import { connectGuestPort } from './guest-port.js';

/** The guest port browser.js gives Chromium's remote debugging. */
export const BROWSER_CDP_PORT = 9222;
const MAX_VERSION_BYTES = 64 * 1024;
const VERSION_TIMEOUT_MS = 60_000;
/** Chromium's browser target: a UUID, nothing a path could be smuggled in. */
const BROWSER_TARGET = /^\/devtools\/browser\/[A-Za-z0-9-]{1,64}$/;

function noBrowser(label: string, why: string): ConflictError {
  return new ConflictError(`${label} has no browser answering CDP on port ${BROWSER_CDP_PORT}: ${why}`, {
    hint: 'fork it from a snapshot of a recipe with runtime: browser (e.g. playwright-browser)',
  });
}

/**
 * The path of the browser target's WebSocket in the guest
 * (`/devtools/browser/<id>`). A child's runtime makes its pages' generators
 * the child's own on its first eval, so one (empty) eval goes first: a CDP
 * client must never see the parent's Math.random or getRandomValues.
 */
export async function browserTargetPath(agent: AgentClient, label: string): Promise<string> {
  await agent.eval('return null', { timeoutMs: VERSION_TIMEOUT_MS }).catch(() => undefined);
  return targetFromVersion(agent, label);
}

function targetFromVersion(agent: AgentClient, label: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        path: '/json/version',
        // Chromium only answers a Host that is an IP address or localhost.
        headers: { host: `127.0.0.1:${BROWSER_CDP_PORT}`, connection: 'close' },
        createConnection: () => connectGuestPort(agent, BROWSER_CDP_PORT, label),
        timeout: VERSION_TIMEOUT_MS,
        maxHeaderSize: 16 * 1024,
      },
      (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_VERSION_BYTES) req.destroy(noBrowser(label, 'its /json/version is too large'));
          else parts.push(chunk);
        });
        res.on('end', () => {
          try {
            const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
              webSocketDebuggerUrl?: unknown;
            };
            const url =
              typeof body.webSocketDebuggerUrl === 'string' ? new URL(body.webSocketDebuggerUrl) : null;
            if (!url || !BROWSER_TARGET.test(url.pathname)) throw new Error('no browser target');
            resolve(url.pathname);
          } catch {
            reject(
              noBrowser(label, `its /json/version (status ${res.statusCode ?? '?'}) names no browser target`),
            );
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(
        new TimeoutError(
          `${label}'s browser did not answer /json/version in ${VERSION_TIMEOUT_MS} ms`,
          VERSION_TIMEOUT_MS,
        ),
      ),
    );
    req.on('error', (err) =>
      reject(err instanceof PortClosedError ? noBrowser(label, 'nothing listens there') : err),
    );
    req.end();
  });
}
