// `forkd serve`: the daemon (REST API v1). SIGTERM drains in-flight requests
// and leaves sandboxes running for the next daemon to re-attach.
import type { Command } from 'commander';
import { startDaemon } from '../../daemon/server.js';
import { InvalidArgumentError } from '../../errors.js';
import { drainOnSignal } from '../../util/cleanup.js';
import { intOption, type GlobalOptions } from '../context.js';

interface ServeOptions extends GlobalOptions {
  bind: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  auditLog?: string;
  prewarm?: string[];
  egressAllowCidr?: string[];
  logLevel: string;
  maxOutputBytes?: string;
  e2bMaxSandboxes?: number;
  e2bDomain?: string;
  e2bTls?: boolean;
}

function parseByteCount(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError(`invalid ${flag} ${JSON.stringify(text)}`, flag.slice(2), {
      hint: 'give a whole number of bytes, e.g. 268435456',
    });
  }
  return n;
}

function parsePrewarm(specs: string[] = []): Record<string, number> {
  const pools: Record<string, number> = {};
  for (const spec of specs) {
    const match = /^([A-Za-z0-9_-]{1,64})=(\d+)$/.exec(spec);
    const n = Number(match?.[2]);
    if (!match || n < 1 || n > 1000) {
      throw new InvalidArgumentError(`invalid --prewarm ${JSON.stringify(spec)}`, 'prewarm', {
        hint: 'use TAG=N with N from 1 to 1000',
      });
    }
    pools[match[1]!] = n;
  }
  return pools;
}

/** HOST:PORT (the hub server's only form). */
export function parseBind(bind: string): { host: string; port: number } {
  const parsed = parseDaemonBind(bind);
  if ('socketPath' in parsed) {
    throw new InvalidArgumentError(
      `invalid --bind ${JSON.stringify(bind)}: this server listens on TCP only`,
      'bind',
      {
        hint: 'use HOST:PORT, e.g. 127.0.0.1:7070',
      },
    );
  }
  return parsed;
}

/** HOST:PORT or unix:/path (the daemon). */
export function parseDaemonBind(bind: string): { host: string; port: number } | { socketPath: string } {
  if (bind.startsWith('unix:')) {
    const socketPath = bind.slice('unix:'.length);
    if (!socketPath.startsWith('/') || Buffer.byteLength(socketPath) > 107) {
      throw new InvalidArgumentError(`invalid --bind ${JSON.stringify(bind)}`, 'bind', {
        hint: 'use unix:/absolute/path (under 108 bytes), e.g. unix:/run/forkd.sock',
      });
    }
    return { socketPath };
  }
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(bind);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`invalid --bind ${JSON.stringify(bind)}`, 'bind', {
      hint: 'use HOST:PORT (e.g. 127.0.0.1:8889) or unix:/path/to/forkd.sock',
    });
  }
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;

function parseLogLevel(level: string): (typeof LOG_LEVELS)[number] {
  const found = LOG_LEVELS.find((l) => l === level);
  if (!found)
    throw new InvalidArgumentError(`invalid --log-level ${JSON.stringify(level)}`, 'log-level', {
      hint: `use one of ${LOG_LEVELS.join(', ')}`,
    });
  return found;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the forkd daemon (REST API v1; see API-v1.md)')
    .option(
      '--bind <host:port|unix:path>',
      'address to listen on; unix:/path listens on a socket only this user can open (mode 0600)',
      '127.0.0.1:8889',
    )
    .option('--token-file <file>', 'require this bearer token (required for non-loopback binds)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (with --tls-key)')
    .option('--tls-key <file>', 'private key for --tls-cert')
    .option('--audit-log <file>', 'audit JSONL (default <data-dir>/audit.jsonl)')
    .option('--log-level <level>', 'structured JSON request logs on stderr: error, warn, info, debug', 'info')
    .option('--prewarm <tag=n...>', 'keep n children of a snapshot restored for `prewarm: true` requests')
    .option(
      '--egress-allow-cidr <cidr...>',
      'let sandboxes with egress internet or allow: reach this private range too (a LAN); never the host itself',
    )
    .option(
      '--max-output-bytes <n>',
      'the most exec output one call may ask the daemon to keep (max_output_bytes; default 268435456)',
    )
    .option(
      '--e2b-domain <domain>',
      'E2B host names are api.<domain> and <port>-<id>.<domain> (default localhost; names must reach this daemon)',
    )
    .option(
      '--e2b-tls',
      'serve HTTPS with a certificate for the E2B domain from a local CA kept in <data-dir>/e2b-tls (see `forkd e2b env`)',
    )
    .option(
      '--e2b-max-sandboxes <n>',
      "E2B sandboxes running at once through E2B's API (past it, create and fork answer 429)",
      intOption('--e2b-max-sandboxes', 1, 100_000),
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ServeOptions>();
      const maxOutputBytes = parseByteCount(opts.maxOutputBytes, '--max-output-bytes');
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) {
        throw new InvalidArgumentError('--tls-cert and --tls-key go together', 'tls');
      }
      const bind = parseDaemonBind(opts.bind);
      const log = (msg: string) => process.stderr.write(`forkd serve: ${msg}\n`);
      if (!opts.tokenFile && 'host' in bind) {
        log(
          `no --token-file: any local user or process that can connect to ${opts.bind} controls every sandbox ` +
            '(guests cannot: their egress never reaches the host); a token, or --bind unix:PATH, keeps them out',
        );
      }
      const daemon = await startDaemon({
        dataDir: opts.dataDir,
        ...bind,
        tokenFile: opts.tokenFile,
        auditLog: opts.auditLog,
        prewarm: parsePrewarm(opts.prewarm),
        egressAllowCidrs: opts.egressAllowCidr ?? [],
        maxOutputBytes,
        e2bMaxSandboxes: opts.e2bMaxSandboxes,
        e2bDomain: opts.e2bDomain,
        e2bTls: opts.e2bTls ?? false,
        logLevel: parseLogLevel(opts.logLevel),
        tls: opts.tlsCert && opts.tlsKey ? { certFile: opts.tlsCert, keyFile: opts.tlsKey } : undefined,
        log,
      });
      drainOnSignal(async (signal) => {
        log(`${signal}: draining`);
        await daemon.close();
      });
      log(`listening on ${daemon.url} (data dir ${daemon.context.engine.dataDir.root})`);
    });
}
