// sandbox.browser: a browser sandbox's Chromium for the caller's own
// Playwright (or any CDP client). The endpoint is a WebSocket on the daemon
// that the daemon relays to the guest's DevTools port, so it needs the
// daemon's token, and reaches only this sandbox's browser.
import type { Controller } from './controller.js';
import type { RequestOpts } from './http.js';

/** What `chromium.connectOverCDP(options)` takes to attach to a sandbox's browser. */
export interface CdpConnectOptions {
  endpointURL: string;
  headers: Record<string, string>;
}

export class SandboxBrowser {
  /** @internal */
  constructor(
    private readonly controller: Controller,
    private readonly sandboxId: string,
  ) {}

  /**
   * The browser target's WebSocket URL through the daemon
   * (`ws://…/v1/sandboxes/<id>/ports/9222/devtools/browser/<uuid>`). Send
   * `cdpHeaders()` with it when the daemon has a token. ControllerError 409
   * when the sandbox has no browser.
   */
  async cdpUrl(opts?: RequestOpts): Promise<string> {
    const info = await this.controller.getBrowser(this.sandboxId, opts);
    const base = new URL(this.controller.url);
    base.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:';
    return new URL(info.cdp_path, base).toString();
  }

  /** Headers the CDP WebSocket needs: the daemon's bearer token, if it has one. */
  cdpHeaders(): Record<string, string> {
    return this.controller.authHeaders();
  }

  /** URL and headers together: `await chromium.connectOverCDP(await sandbox.browser.connectOptions())`. */
  async connectOptions(opts?: RequestOpts): Promise<CdpConnectOptions> {
    return { endpointURL: await this.cdpUrl(opts), headers: this.cdpHeaders() };
  }
}
