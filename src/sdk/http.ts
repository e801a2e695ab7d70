// The transport under Controller: builds URLs, adds the bearer token, turns
// `{ signal, timeoutMs }` into one AbortSignal, and sends every non-2xx
// response through errorFromResponse, which picks its error class. Web APIs
// only (fetch, URL, AbortSignal), so the SDK can run outside Node.
import { errorFromResponse } from './errors.js';

/** Options every SDK call takes last. */
export interface RequestOpts {
  /** Aborts the request (and, for streams, the reading of the body). */
  signal?: AbortSignal;
  /** Deadline for the whole call, body included; rejects with a `TimeoutError` DOMException. */
  timeoutMs?: number;
}

/** Query parameters; undefined values are left out. */
export type Query = Record<string, string | number | boolean | undefined>;

/** A request's query and body (at most one of `json` and `bytes`). */
export interface SendInit {
  query?: Query;
  /** Sent as `application/json`. */
  json?: unknown;
  /** Sent as `application/octet-stream`. */
  bytes?: Uint8Array;
}

/** Where requests go and how they authenticate. */
export interface HttpConfig {
  baseUrl: string;
  token: string | undefined;
  fetch: typeof fetch;
}

/** One AbortSignal for a caller's signal and a deadline (undefined when neither). */
export function requestSignal(opts: RequestOpts | undefined): AbortSignal | undefined {
  const signals: AbortSignal[] = [];
  if (opts?.signal) signals.push(opts.signal);
  if (opts?.timeoutMs !== undefined) signals.push(AbortSignal.timeout(opts.timeoutMs));
  if (signals.length <= 1) return signals[0];
  return AbortSignal.any(signals);
}

/** Sends requests to one daemon; every non-2xx answer rejects with a ControllerError (or a subclass). */
export class HttpClient {
  constructor(private readonly config: HttpConfig) {}

  /** The absolute URL for `path` under the base URL. */
  url(path: string, query?: Query): string {
    const url = new URL(this.config.baseUrl.replace(/\/+$/, '') + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  /** The bearer token's header, when there is a token. */
  authHeaders(): Record<string, string> {
    return this.config.token ? { authorization: `Bearer ${this.config.token}` } : {};
  }

  /** Sends a request; resolves with a 2xx response whose body the caller must consume. */
  async send(method: string, path: string, init: SendInit = {}, opts?: RequestOpts): Promise<Response> {
    const url = this.url(path, init.query);
    const headers: Record<string, string> = { accept: 'application/json', ...this.authHeaders() };
    let body: string | Uint8Array | undefined;
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(init.json);
    } else if (init.bytes !== undefined) {
      headers['content-type'] = 'application/octet-stream';
      body = init.bytes;
    }
    const signal = requestSignal(opts);
    const res = await this.config.fetch(url, { method, headers, body, ...(signal ? { signal } : {}) });
    if (!res.ok) throw await errorFromResponse(res, url);
    return res;
  }

  /** A request whose 2xx answer is JSON. */
  async json<T>(method: string, path: string, init?: SendInit, opts?: RequestOpts): Promise<T> {
    const res = await this.send(method, path, init, opts);
    return (await res.json()) as T;
  }

  /** A request whose 2xx answer has no body worth reading (204). */
  async empty(method: string, path: string, init?: SendInit, opts?: RequestOpts): Promise<void> {
    const res = await this.send(method, path, init, opts);
    await res.body?.cancel();
  }
}
