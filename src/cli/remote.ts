// Daemon-mode commands talk to `forkd serve` through the SDK: the options
// they share and the one place a Controller is made.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
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
  return new Controller({ url: opts.url ?? process.env.FORKD_URL, token });
}
