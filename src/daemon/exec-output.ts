// What an exec hands back over HTTP, bounded: the output cap a call may ask
// for (up to the daemon's), and the result serialised as a stream, so that
// escaping (a NUL byte becomes six characters of JSON) never builds one giant
// string.
import { Readable } from 'node:stream';
import { DEFAULT_MAX_OUTPUT_BYTES } from '../engine/agent/exec.js';
import type { ExecResult } from '../engine/agent/types.js';
import type { DaemonContext } from './context.js';
import { HttpError } from './http-errors.js';

/** The output a call keeps: what it asked for, within the daemon's ceiling. */
export function outputLimit(ctx: DaemonContext, requested: number | undefined): number {
  const max = ctx.limits.maxOutputBytes;
  if (requested === undefined) return Math.min(DEFAULT_MAX_OUTPUT_BYTES, max);
  if (requested > max) {
    throw new HttpError(400, `max_output_bytes must be at most ${max} (the daemon's --max-output-bytes)`);
  }
  return requested;
}

/** Bytes of output decoded and escaped at a time. */
const SLICE = 64 * 1024;

function* jsonString(bytes: Buffer): Generator<string> {
  const decoder = new TextDecoder();
  yield '"';
  for (let off = 0; off < bytes.length; off += SLICE) {
    const text = decoder.decode(bytes.subarray(off, off + SLICE), { stream: off + SLICE < bytes.length });
    yield JSON.stringify(text).slice(1, -1);
  }
  yield '"';
}

/** `{stdout, stderr, exit_code}` (API-v1's ExecResult, plus `truncated: true` when cut) as a JSON stream. */
export function execResultBody(r: ExecResult): Readable {
  return Readable.from(
    (function* () {
      yield '{"stdout":';
      yield* jsonString(r.stdout);
      yield ',"stderr":';
      yield* jsonString(r.stderr);
      // v1's shape exactly, unless the output was cut: clients of the original compare whole bodies.
      yield `,"exit_code":${r.exitCode}${r.truncated ? ',"truncated":true' : ''}}`;
    })(),
    { objectMode: false },
  );
}
