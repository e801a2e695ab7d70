// `forkd e2b env`: the environment that points a program written for E2B's
// SDK at this host's forkd daemon. `eval "$(forkd e2b env)"` and the
// program runs unchanged: E2B_API_URL and E2B_SANDBOX_URL name the daemon's
// E2B routes (plain HTTP on loopback, so no CA and no resolver are needed),
// E2B_API_KEY is the daemon's token.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { daemonOwner } from '../../engine/daemon-lock.js';
import { DataDir, defaultDataDir } from '../../snapshot/data-dir.js';
import { InvalidArgumentError } from '../../errors.js';
import { createPrinter } from '../output.js';
import type { RemoteOptions } from '../remote.js';

const DEFAULT_URL = 'http://127.0.0.1:8889';
/** The key when the daemon has no token: the SDK refuses to run without one, and the daemon ignores it. */
const NO_TOKEN_KEY = 'forkd-no-token';

/** The daemon to point at: --url, FORKD_URL, the daemon serving this data dir, or the default address. */
async function daemonUrl(opts: RemoteOptions): Promise<string> {
  const given = opts.url ?? process.env.FORKD_URL;
  if (given) return given.replace(/\/+$/, '');
  const owner = await daemonOwner(new DataDir(opts.dataDir ?? defaultDataDir()));
  if (owner && /^https?:\/\//.test(owner.bind)) return owner.bind;
  if (owner?.bind.startsWith('unix:')) {
    throw new InvalidArgumentError(`the daemon listens on ${owner.bind}: E2B's SDK speaks HTTP only`, 'url', {
      hint: 'run `forkd serve --bind 127.0.0.1:8889 --token-file FILE` for E2B clients',
    });
  }
  return DEFAULT_URL;
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

export function e2bEnvironment(url: string, token: string | undefined): Record<string, string> {
  const host = new URL(url).host;
  return {
    E2B_API_URL: `${url}/e2b`,
    E2B_SANDBOX_URL: `${url}/e2b-sandbox`,
    E2B_API_KEY: token ?? NO_TOKEN_KEY,
    // Sandbox host names (`sandbox.getHost(port)`) become `<port>-<id>.<this>`, routed by the daemon.
    E2B_DOMAIN:
      host.startsWith('127.') || host.startsWith('localhost')
        ? `localhost:${new URL(url).port || '80'}`
        : host,
  };
}

export function registerE2bCommand(program: Command): void {
  const e2b = program
    .command('e2b')
    .description("serve E2B's SDK: what to set so E2B programs use this forkd");
  e2b
    .command('env')
    .description('print the environment that points E2B programs at this forkd daemon')
    .option(
      '--url <url>',
      'daemon URL (env FORKD_URL; default: the daemon serving the data dir, or http://127.0.0.1:8889)',
    )
    .option('--token-file <file>', "the daemon's token file (or env FORKD_TOKEN): it is the E2B API key")
    .addHelpText(
      'after',
      [
        '',
        'Usage:  eval "$(forkd e2b env)"   then run the E2B program unchanged.',
        'Templates are snapshot tags (or built-in recipe names, built on first use);',
        "E2B's default templates `base` and `code-interpreter-v1` are served by the python-numpy recipe.",
        '--json prints the variables as an object.',
      ].join('\n'),
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<RemoteOptions>();
      const token = opts.tokenFile ? readFileSync(opts.tokenFile, 'utf8').trim() : process.env.FORKD_TOKEN;
      const env = e2bEnvironment(await daemonUrl(opts), token);
      const out = createPrinter({ json: opts.json ?? false });
      out.result(env, () =>
        Object.entries(env)
          .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
          .join('\n'),
      );
    });
}
