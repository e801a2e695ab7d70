// A JSON call against a daemon under test: status and parsed body, nothing thrown for 4xx/5xx.
export interface JsonAnswer {
  status: number;
  json: unknown;
}

/** `baseUrl` is read at each call, so a test can restart its daemon on another port. */
export function jsonCaller(baseUrl: () => string) {
  return async (method: string, path: string, body?: unknown): Promise<JsonAnswer> => {
    const res = await fetch(baseUrl() + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? (JSON.parse(text) as unknown) : null };
  };
}
