// `forkd e2b env`: the environment that points a program written for E2B's
// SDK at this host's forkd daemon. `eval "$(forkd e2b env)"` and the
// program runs unchanged: E2B_API_URL and E2B_SANDBOX_URL name the daemon's
// E2B routes (plain HTTP on loopback needs no CA and no resolver),
// E2B_API_KEY is the daemon's token. With a daemon serving --e2b-tls,
// --domain-only gives E2B_DOMAIN and the local CA instead, for clients that
// build E2B's https host names themselves.
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { daemonOwner } from '../../engine/daemon-lock.js';
import { DEFAULT_E2B_DOMAIN, localTlsDomain, localTlsPaths } from '../../daemon/e2b/index.js';
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

export interface E2bEnvInput {
  url: string;
  token: string | undefined;
  /** The daemon's E2B domain: its TLS certificate's, or the default `localhost`. */
  domain: string;
  /** The local CA's certificate when the daemon serves TLS from it. */
  caFile: string | null;
  /** Only E2B_DOMAIN (and what trusts and reaches it): the SDK then builds https://api.<domain> itself. */
  domainOnly: boolean;
}

export function e2bEnvironment(input: E2bEnvInput): Record<string, string> {
  const url = new URL(input.url);
  const base = input.url.replace(/\/+$/, '');
  const defaultPort = url.protocol === 'https:' ? '443' : '80';
  // The SDK appends nothing to the domain but a prefix: the daemon's port rides along.
  const domain = url.port && url.port !== defaultPort ? `${input.domain}:${url.port}` : input.domain;
  return {
    ...(input.domainOnly ? {} : { E2B_API_URL: `${base}/e2b`, E2B_SANDBOX_URL: `${base}/e2b-sandbox` }),
    E2B_API_KEY: input.token ?? NO_TOKEN_KEY,
    E2B_DOMAIN: domain,
    ...(input.caFile ? { NODE_EXTRA_CA_CERTS: input.caFile } : {}),
  };
}

/** Whether a name reaches this host's loopback (E2B's names must reach the daemon). */
async function reachesLoopback(name: string): Promise<boolean> {
  const found = await lookup(name, { all: true }).catch(() => []);
  return found.some((a) => a.address === '127.0.0.1' || a.address === '::1');
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
    .option(
      '--domain-only',
      'print E2B_DOMAIN (with the CA to trust) instead of the URLs: for a daemon serving --e2b-tls',
    )
    .addHelpText(
      'after',
      [
        '',
        'Usage:  eval "$(forkd e2b env)"   then run the E2B program unchanged.',
        'With `forkd serve --e2b-tls --e2b-domain D`, --domain-only sets E2B_DOMAIN and NODE_EXTRA_CA_CERTS',
        '(the local CA) instead: the SDK then calls https://api.D and https://<port>-<id>.D, names that',
        'must reach this host (for D under .localhost: apt-get install libnss-myhostname).',
        'Templates are snapshot tags (or built-in recipe names, built on first use);',
        "E2B's default templates `base` and `code-interpreter-v1` are served by the python-numpy recipe.",
        '--json prints the variables as an object.',
      ].join('\n'),
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<RemoteOptions & { domainOnly?: boolean }>();
      const token = opts.tokenFile ? readFileSync(opts.tokenFile, 'utf8').trim() : process.env.FORKD_TOKEN;
      const url = await daemonUrl(opts);
      const dataDir = opts.dataDir ?? defaultDataDir();
      const tlsDomain = url.startsWith('https:') ? await localTlsDomain(dataDir) : null;
      if (opts.domainOnly && !tlsDomain) {
        throw new InvalidArgumentError(
          `--domain-only needs a daemon serving TLS from forkd's local CA, and ${url} is not one`,
          'domain-only',
          {
            hint: 'run `forkd serve --e2b-tls --e2b-domain e2b.localhost --bind 127.0.0.1:8443`, or drop --domain-only',
          },
        );
      }
      const domain = tlsDomain ?? DEFAULT_E2B_DOMAIN;
      const env = e2bEnvironment({
        url,
        token,
        domain,
        caFile: tlsDomain ? localTlsPaths(dataDir).caFile : null,
        domainOnly: opts.domainOnly ?? false,
      });
      if (!(await reachesLoopback(`api.${domain}`)) && (opts.domainOnly || tlsDomain)) {
        process.stderr.write(
          `forkd e2b env: api.${domain} does not reach this host: E2B's SDK needs names under ${domain} to (for .localhost: apt-get install libnss-myhostname)\n`,
        );
      }
      const out = createPrinter({ json: opts.json ?? false });
      out.result(env, () =>
        Object.entries(env)
          .map(([k, v]) => `export ${k}=${shellQuote(v)}`)
          .join('\n'),
      );
    });
}
