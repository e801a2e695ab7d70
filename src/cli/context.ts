// What every CLI command receives: the global options, resolved once.
import { InvalidArgumentError as OptionError } from 'commander';
import { Engine, parseEgress, type EgressPolicy } from '../engine/index.js';
import type { AcceleratorChoice } from '../vmm/accel.js';
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
  'what the guest may connect to: none (default), internet (public addresses only, never this host or private ranges), or allow:<cidr>,…';

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
