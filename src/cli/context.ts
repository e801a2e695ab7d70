// What every CLI command receives: the global options, resolved once.
import { InvalidArgumentError as OptionError } from 'commander';
import type { Command } from 'commander';
import type { SandboxQuotaParams } from '../sdk/index.js';
import { Engine, parseEgress, type EgressPolicy, type SandboxLimits } from '../engine/index.js';
import type { AcceleratorChoice } from '../vmm/accel.js';
import { resolve } from 'node:path';
import { loadTrustPolicy, type TrustPolicy } from '../hub/signing.js';
import { createPrinter, type Printer } from './output.js';

export interface GlobalOptions {
  dataDir?: string;
  accel?: string;
  json?: boolean;
  quiet?: boolean;
}

export interface CliContext {
  engine: Engine;
  out: Printer;
}

export function makeContext(opts: GlobalOptions): CliContext {
  const out = createPrinter({ json: opts.json ?? false, quiet: opts.quiet ?? false });
  const engine = new Engine({ dataDir: opts.dataDir, accel: (opts.accel ?? 'auto') as AcceleratorChoice });
  return { engine, out };
}

/** Parse a positive integer option, with a one-line error naming the option. */
export function intOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new OptionError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

/** The hub to use: --hub, else FORKD_HUB_URL, else none. */
export function hubUrl(
  option: string | boolean | undefined,
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (typeof option === 'string' && option !== '') return option;
  return env.FORKD_HUB_URL || undefined;
}

export const EGRESS_HELP =
  'what the guest may connect to: none (default), internet (public addresses only, never this host or private ranges), or allow:<domain|cidr>,…';

/** Parse --egress; `--no-egress` (commander: false) is the default policy, spelled out. */
export function egressOption(value: string): EgressPolicy {
  try {
    return parseEgress(value);
  } catch (err) {
    throw new OptionError(`--egress: ${(err as Error).message}`);
  }
}

export function egressFrom(value: EgressPolicy | boolean | undefined): EgressPolicy {
  return typeof value === 'object' ? value : { mode: 'none' };
}

/** The quota options every command that makes sandboxes takes (memory has its own, older flag). */
export interface QuotaOptions {
  memoryLimitMib?: number;
  cpus?: number;
  cpuWeight?: number;
  pidsMax?: number;
  ioReadBps?: number;
  ioWriteBps?: number;
  ioReadIops?: number;
  ioWriteIops?: number;
}

function numberOption(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < min || n > max) {
      throw new OptionError(`${name} must be a number from ${min} to ${max}, got ${JSON.stringify(value)}`);
    }
    return n;
  };
}

export function addQuotaOptions(cmd: Command): Command {
  const big = Number.MAX_SAFE_INTEGER;
  return cmd
    .option(
      '--cpus <cores>',
      'cap CPU at this many cores (0.5 = half a core)',
      numberOption('--cpus', 0.01, 1024),
    )
    .option(
      '--cpu-weight <w>',
      'CPU share under contention, 1-10000 (100 = default)',
      intOption('--cpu-weight', 1, 10000),
    )
    .option('--pids-max <n>', 'threads its QEMU may have (default 512)', intOption('--pids-max', 16, 1 << 22))
    .option('--io-read-bps <bytes>', 'disk read bandwidth cap', intOption('--io-read-bps', 1, big))
    .option('--io-write-bps <bytes>', 'disk write bandwidth cap', intOption('--io-write-bps', 1, big))
    .option('--io-read-iops <n>', 'disk read operations per second cap', intOption('--io-read-iops', 1, big))
    .option(
      '--io-write-iops <n>',
      'disk write operations per second cap',
      intOption('--io-write-iops', 1, big),
    );
}

export function limitsFromOptions(opts: QuotaOptions): SandboxLimits {
  return {
    memoryMib: opts.memoryLimitMib ?? null,
    cpuCores: opts.cpus ?? null,
    cpuWeight: opts.cpuWeight ?? null,
    pidsMax: opts.pidsMax ?? null,
    ioReadBps: opts.ioReadBps ?? null,
    ioWriteBps: opts.ioWriteBps ?? null,
    ioReadIops: opts.ioReadIops ?? null,
    ioWriteIops: opts.ioWriteIops ?? null,
  };
}

/** The same quotas as SDK parameters (spawn and workspaces through the daemon). */
export function quotaParams(opts: QuotaOptions): SandboxQuotaParams {
  return {
    cpuCores: opts.cpus,
    cpuWeight: opts.cpuWeight,
    pidsMax: opts.pidsMax,
    ioReadBps: opts.ioReadBps,
    ioWriteBps: opts.ioWriteBps,
    ioReadIops: opts.ioReadIops,
    ioWriteIops: opts.ioWriteIops,
  };
}

/** What commands that install packs (pull, unpack, quickstart) take to decide whom to trust. */
export interface TrustOptions {
  trustKey?: string[];
  allowUnsigned?: boolean;
}

export function addTrustOptions(cmd: Command): Command {
  return cmd
    .option(
      '--trust-key <pubfile...>',
      'accept packs signed by this public key (besides those in <data-dir>/trusted-keys/, see `forkd trust`)',
    )
    .option(
      '--allow-unsigned',
      'install an unsigned pack (a signed one must still verify against a trusted key)',
    );
}

export function trustFromOptions(engine: Engine, opts: TrustOptions): Promise<TrustPolicy> {
  return loadTrustPolicy(
    engine.dataDir.root,
    (opts.trustKey ?? []).map((f) => resolve(f)),
    opts.allowUnsigned ?? false,
  );
}
