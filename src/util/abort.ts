// Deadlines and cancellation: every long operation takes `{ signal, timeoutMs }`
// and turns them into one AbortSignal whose reason is a typed forkd error.
import { AbortedError, TimeoutError } from '../errors.js';

export interface CallOptions {
  signal?: AbortSignal | undefined;
  timeoutMs?: number | undefined;
}

/** Combine a caller's signal with a timeout; the reason is a TimeoutError or AbortedError. */
export function deadlineSignal(opts: CallOptions, what: string): AbortSignal {
  const signals: AbortSignal[] = [];
  if (opts.signal) signals.push(opts.signal);
  if (opts.timeoutMs !== undefined) {
    const ms = opts.timeoutMs;
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new TimeoutError(`${what} timed out after ${ms} ms`, ms)),
      ms,
    );
    timer.unref();
    signals.push(controller.signal);
  }
  if (signals.length === 0) return new AbortController().signal;
  if (signals.length === 1) return signals[0]!;
  return AbortSignal.any(signals);
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  // A bare controller.abort() leaves a DOMException: callers catch forkd's class.
  if (reason instanceof Error && reason.name === 'AbortError')
    return new AbortedError(undefined, { cause: reason });
  return reason instanceof Error ? reason : new AbortedError();
}

/** A promise that rejects when the signal aborts; for racing against work. */
export function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(abortReason(signal));
    else signal.addEventListener('abort', () => reject(abortReason(signal)), { once: true });
  });
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
