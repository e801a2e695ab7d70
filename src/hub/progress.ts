// Progress of a long hub transfer (pack, unpack, download, upload), reported
// in bytes so a caller can draw a bar or print a percentage.

export type TransferPhase = 'scan' | 'pack' | 'download' | 'unpack' | 'upload';

export interface TransferProgress {
  phase: TransferPhase;
  doneBytes: number;
  /** null when the total is not known (a download without Content-Length). */
  totalBytes: number | null;
}

export type TransferProgressFn = (progress: TransferProgress) => void;

/** Calls `fn` at most every `intervalMs` (and always for the final update). */
export function throttledProgress(
  fn: TransferProgressFn | undefined,
  phase: TransferPhase,
  totalBytes: number | null,
  intervalMs = 100,
): { add(bytes: number): void; done(): void; readonly bytes: number } {
  let doneBytes = 0;
  let last = 0;
  return {
    add(bytes) {
      doneBytes += bytes;
      const now = Date.now();
      if (fn && now - last >= intervalMs) {
        last = now;
        fn({ phase, doneBytes, totalBytes });
      }
    },
    done() {
      fn?.({ phase, doneBytes, totalBytes: totalBytes ?? doneBytes });
    },
    get bytes() {
      return doneBytes;
    },
  };
}
