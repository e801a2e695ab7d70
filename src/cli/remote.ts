// Daemon-mode commands talk to `forkd serve` through the SDK: the options
// they share and the one place a Controller is made. A daemon that never
// answers is a RemoteError (code `remote`), so the CLI says which URL it
// tried instead of the fetch's bare "fetch failed".
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { RemoteError } from '../errors.js';
import { Controller } from '../sdk/index.js';
import type { GlobalOptions } from './context.js';

export interface RemoteOptions extends GlobalOptions {
  url?: string;
  tokenFile?: string;
}

export function withRemoteOptions(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'daemon URL (env FORKD_URL; default http://127.0.0.1:8889)')
    .option('--token-file <file>', 'bearer token file (or env FORKD_TOKEN)');
}

export function controllerFrom(opts: RemoteOptions): Controller {
  const token = opts.tokenFile ? readFileSync(opts.tokenFile, 'utf8').trim() : process.env.FORKD_TOKEN;
  return new Controller({ url: opts.url ?? process.env.FORKD_URL, token, fetch: fetchOrExplain });
}

/** fetch, with "could not connect" turned into an error naming the daemon. */
async function fetchOrExplain(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(input, init);
  } catch (err) {
    // Aborts and deadlines are the caller's; only a failed connection is explained.
    if (!(err instanceof TypeError)) throw err;
    const url = new URL(input instanceof Request ? input.url : input);
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    const why = [cause?.code, cause?.message, err.message].find((s) => typeof s === 'string') as string;
    throw new RemoteError(`cannot reach the forkd daemon at ${url.origin}: ${why}`, url.href, null, {
      hint: 'start it with `forkd serve`, or point --url / FORKD_URL at it',
      cause: err,
    });
  }
}
