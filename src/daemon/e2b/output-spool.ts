// Live output of a running cell. The interpreter helper writes each line the
// cell prints to a spool file in the guest ({"s": "o"|"e", "t": text} per
// line) as well as to the runtime's capture; while the cell runs, the daemon
// reads the spool's new bytes and streams them. The spool is guest-written:
// reads are bounded per poll, a line longer than the cap is dropped, and
// anything that does not parse is ignored. The reply's whole output stays
// the truth: what the spool did not deliver is sent from it at the end.
import { randomUUID } from 'node:crypto';
import type { AgentClient } from '../../engine/agent/client.js';

/** Bytes read per poll. */
const SLICE_BYTES = 64 * 1024;
/** The longest spool line kept while waiting for its newline. */
const MAX_LINE_BYTES = 1024 * 1024;

export interface SpoolLine {
  stream: 'stdout' | 'stderr';
  text: string;
}

export class OutputSpool {
  readonly path = `/tmp/.forkd-e2b-${randomUUID()}.jsonl`;
  private offset = 0;
  private partial = Buffer.alloc(0);
  /** Characters of each stream already streamed. */
  readonly sent = { stdout: 0, stderr: 0 };

  constructor(private readonly agent: Pick<AgentClient, 'readFileSlice'>) {}

  /** The lines written since the last poll (none when the spool is not there yet or is gone). */
  async poll(signal?: AbortSignal): Promise<SpoolLine[]> {
    const read = await this.agent
      .readFileSlice(this.path, this.offset, SLICE_BYTES, {
        timeoutMs: 10_000,
        ...(signal ? { signal } : {}),
      })
      .catch(() => null);
    if (!read || read.body.length === 0) return [];
    this.offset += read.body.length;
    return this.take(read.body);
  }

  /** Complete lines out of bytes read (exported for tests through poll). */
  take(bytes: Buffer): SpoolLine[] {
    let data = this.partial.length ? Buffer.concat([this.partial, bytes]) : bytes;
    const lines: SpoolLine[] = [];
    for (let nl = data.indexOf(10); nl !== -1; nl = data.indexOf(10)) {
      const line = parseLine(data.subarray(0, nl).toString('utf8'));
      data = data.subarray(nl + 1);
      if (!line) continue;
      this.sent[line.stream] += line.text.length;
      lines.push(line);
    }
    this.partial = data.length > MAX_LINE_BYTES ? Buffer.alloc(0) : Buffer.from(data);
    return lines;
  }

  /** What of the reply's whole output the spool did not deliver. */
  rest(whole: { stdout: string; stderr: string }): { stdout: string; stderr: string } {
    return { stdout: whole.stdout.slice(this.sent.stdout), stderr: whole.stderr.slice(this.sent.stderr) };
  }
}

function parseLine(text: string): SpoolLine | null {
  try {
    const v = JSON.parse(text) as { s?: unknown; t?: unknown };
    if (typeof v.t !== 'string') return null;
    if (v.s === 'o') return { stream: 'stdout', text: v.t };
    if (v.s === 'e') return { stream: 'stderr', text: v.t };
    return null;
  } catch {
    return null;
  }
}
