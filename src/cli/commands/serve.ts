// `forkd serve`: the daemon (REST API v1). SIGTERM drains in-flight requests
// and leaves sandboxes running for the next daemon to re-attach.
import type { Command } from 'commander';
import { startDaemon } from '../../daemon/server.js';
import { InvalidArgumentError } from '../../errors.js';
import { drainOnSignal } from '../../util/cleanup.js';
import type { GlobalOptions } from '../context.js';

interface ServeOptions extends GlobalOptions {
  bind: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  auditLog?: string;
  prewarm?: string[];
  egressAllowCidr?: string[];
  logLevel: string;
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

export function parseBind(bind: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(bind);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`invalid --bind ${JSON.stringify(bind)}`, 'bind', {
      hint: 'use HOST:PORT, e.g. 127.0.0.1:8889',
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
    .option('--bind <host:port>', 'address to listen on', '127.0.0.1:8889')
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
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ServeOptions>();
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) {
        throw new InvalidArgumentError('--tls-cert and --tls-key go together', 'tls');
      }
      const { host, port } = parseBind(opts.bind);
      const log = (msg: string) => process.stderr.write(`forkd serve: ${msg}\n`);
      const daemon = await startDaemon({
        dataDir: opts.dataDir,
        host,
        port,
        tokenFile: opts.tokenFile,
        auditLog: opts.auditLog,
        prewarm: parsePrewarm(opts.prewarm),
        egressAllowCidrs: opts.egressAllowCidr ?? [],
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
