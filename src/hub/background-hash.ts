// sha256 on a worker thread. Verifying a python-numpy pack hashes ~1.4 GiB
// of holes (a file's sha256 covers its zeros, so `sha256sum` agrees), over
// a second on the main thread; on a worker it runs beside the writes and
// zstd instead of after them. One worker per unpack hashes its files in
// order: each `finish()` yields that file's digest and starts the next.
// The queue to the worker is bounded: update() waits while more than
// MAX_QUEUED_BYTES are still unhashed, so a pack's memory stays flat however
// fast it decompresses.
import { Worker } from 'node:worker_threads';

// CommonJS source, evaluated in the worker: no file to locate in src/ or dist/.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const ZERO = Buffer.alloc(1 << 20);
let hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.kind === 'data') {
    hash.update(new Uint8Array(m.bytes));
    parentPort.postMessage({ hashed: m.bytes.byteLength });
  } else if (m.kind === 'runs') {
    // Data and holes in order: a positive run is that many bytes of m.bytes, a negative one that many zeros.
    const bytes = new Uint8Array(m.bytes);
    let at = 0;
    for (const run of m.runs) {
      if (run >= 0) {
        hash.update(bytes.subarray(at, at + run));
        at += run;
      } else {
        for (let left = -run; left > 0; left -= ZERO.length) {
          hash.update(left >= ZERO.length ? ZERO : ZERO.subarray(0, left));
        }
      }
    }
    parentPort.postMessage({ hashed: m.bytes.byteLength });
  }
  else if (m.kind === 'zeros') {
    for (let left = m.count; left > 0; left -= ZERO.length) {
      hash.update(left >= ZERO.length ? ZERO : ZERO.subarray(0, left));
    }
  } else if (m.kind === 'finish') {
    parentPort.postMessage({ id: m.id, digest: hash.digest('hex') });
    hash = createHash('sha256');
  }
});
`;

type WorkerMessage =
  | { kind: 'data'; bytes: ArrayBuffer }
  | { kind: 'runs'; bytes: ArrayBuffer; runs: number[] }
  | { kind: 'zeros'; count: number }
  | { kind: 'finish'; id: number };

/** Bytes handed to the worker and not hashed yet, past which update() waits. */
export const MAX_QUEUED_BYTES = 32 * 1024 * 1024;

export class BackgroundHasher {
  private queued = 0;
  private readonly drainWaiters: Array<() => void> = [];
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private readonly waiting = new Map<number, { resolve: (d: string) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private failure: Error | null = null;

  constructor() {
    this.worker.on('message', (m: { id: number; digest: string } | { hashed: number }) => {
      if ('hashed' in m) {
        this.queued -= m.hashed;
        if (this.queued <= MAX_QUEUED_BYTES / 2) this.releaseWaiters();
        return;
      }
      this.waiting.get(m.id)?.resolve(m.digest);
      this.waiting.delete(m.id);
    });
    this.worker.on('error', (err) => this.fail(err));
    this.worker.on('exit', (code) => this.fail(new Error(`the hashing worker exited (${code})`)));
  }

  /** Hash a copy of `chunk` (the caller may reuse its buffer); waits while the worker is behind. */
  update(chunk: Uint8Array): Promise<void> {
    const bytes = new Uint8Array(chunk).buffer;
    return this.enqueue({ kind: 'data', bytes }, bytes);
  }

  /** Bytes handed over and not hashed yet. */
  get pendingBytes(): number {
    return this.queued;
  }

  private releaseWaiters(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  /**
   * Hash pieces of data with holes between them in one message: `parts` in
   * logical order, a number standing for that many zero bytes. Many small
   * regions then cost one copy and one message, not two per region.
   */
  updateRuns(parts: ReadonlyArray<Uint8Array | number>): Promise<void> {
    const data = parts.filter((p): p is Uint8Array => typeof p !== 'number');
    const joined = Buffer.concat(data);
    const bytes = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.length);
    const runs = parts.map((p) => (typeof p === 'number' ? -p : p.length)).filter((r) => r !== 0);
    return this.enqueue({ kind: 'runs', bytes, runs }, bytes);
  }

  /** Hands `bytes` (transferred) to the worker; waits while more than MAX_QUEUED_BYTES are unhashed. */
  private async enqueue(message: WorkerMessage, bytes: ArrayBuffer): Promise<void> {
    this.queued += bytes.byteLength;
    this.post(message, [bytes]);
    if (this.queued > MAX_QUEUED_BYTES && !this.failure) {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    }
  }

  zeros(count: number): void {
    if (count > 0) this.post({ kind: 'zeros', count });
  }

  /** The digest of everything since the last finish(). */
  finish(): Promise<string> {
    const id = this.nextId++;
    const digest = new Promise<string>((resolve, reject) => {
      if (this.failure) return reject(this.failure);
      this.waiting.set(id, { resolve, reject });
    });
    this.post({ kind: 'finish', id });
    return digest;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners('exit');
    await this.worker.terminate();
    this.fail(new Error('the hashing worker was closed'));
  }

  private post(message: WorkerMessage, transfer: ArrayBuffer[] = []): void {
    if (!this.failure) this.worker.postMessage(message, transfer);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    this.releaseWaiters();
    for (const { reject } of this.waiting.values()) reject(err);
    this.waiting.clear();
  }
}
