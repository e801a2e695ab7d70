// The CLI's one printer: human tables and progress on a TTY, one JSON
// document with --json. Progress always goes to stderr so stdout stays
// machine-readable; so does a failure's line, while --json also puts the
// failure on stdout in the daemon's error shape.
import { CommanderError } from 'commander';
import { ForkdError, HTTP_STATUS, errorMessage } from '../errors.js';
import { ControllerError } from '../sdk/index.js';

export interface Printer {
  json: boolean;
  quiet: boolean;
  /** A progress line on stderr (suppressed with --quiet). */
  progress(message: string): void;
  /** The command's result: JSON when --json, else the human rendering. */
  result(value: unknown, human: () => string): void;
  info(message: string): void;
}

export function createPrinter(opts: { json: boolean; quiet?: boolean }): Printer {
  const started = Date.now();
  return {
    json: opts.json,
    quiet: opts.quiet ?? false,
    progress(message) {
      if (opts.quiet) return;
      const secs = ((Date.now() - started) / 1000).toFixed(1).padStart(5);
      process.stderr.write(`[${secs}s] ${message}\n`);
    },
    result(value, human) {
      if (opts.json) process.stdout.write(JSON.stringify(value, null, 2) + '\n');
      else {
        const text = human();
        if (text) process.stdout.write(text.endsWith('\n') ? text : text + '\n');
      }
    },
    info(message) {
      if (!opts.json) process.stdout.write(message + '\n');
    },
  };
}

/**
 * What --json prints on stdout for a failure: the body the daemon would
 * answer (`error`, `code`, the same codes as the API) and that answer's
 * status. From a daemon (remote commands), its own answer.
 */
export interface ErrorDocument {
  error: string;
  code: string;
  status: number;
}

export function errorDocument(err: unknown): ErrorDocument {
  if (err instanceof ControllerError) return { error: err.message, code: err.code, status: err.status };
  if (err instanceof ForkdError)
    return { error: err.oneLine(), code: err.code, status: HTTP_STATUS[err.code] };
  // Commander's own usage errors ("error: unknown option '--x'"), or help
  // shown on stderr because a command was missing (its message is a placeholder).
  if (err instanceof CommanderError) {
    const error = err.code === 'commander.help' ? 'a command is needed' : err.message.replace(/^error: /, '');
    return { error: `${error} (see --help)`, code: 'invalid_argument', status: 400 };
  }
  return { error: errorMessage(err), code: 'internal', status: 500 };
}

/** A failure: one line on stderr, and with --json its ErrorDocument on stdout. */
export function printError(err: unknown, json: boolean): void {
  // Commander has printed its usage errors already.
  if (!(err instanceof CommanderError)) process.stderr.write(`forkd: error: ${errorMessage(err)}\n`);
  if (json) process.stdout.write(JSON.stringify(errorDocument(err), null, 2) + '\n');
}

/** A plain left-aligned text table. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export { percentile } from '../util/stats.js';
