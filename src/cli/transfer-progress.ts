// Progress of a pack, unpack, download or upload on stderr: a bar redrawn in
// place on a terminal, a line per quarter otherwise (logs, CI), nothing with
// --quiet.
import type { TransferPhase, TransferProgress, TransferProgressFn } from '../engine/index.js';
import { formatBytes, type Printer } from './output.js';

const LABEL: Record<TransferPhase, string> = {
  scan: 'hashing',
  pack: 'packing',
  download: 'downloading',
  unpack: 'unpacking',
  upload: 'uploading',
};

export function transferProgress(
  out: Printer,
  stream: NodeJS.WriteStream = process.stderr,
): TransferProgressFn {
  if (out.quiet) return () => {};
  let phase: TransferPhase | null = null;
  let started = Date.now();
  let lastQuarter = -1;
  const tty = stream.isTTY === true;
  return (p: TransferProgress) => {
    if (p.phase !== phase) {
      if (phase !== null && tty) stream.write('\n');
      phase = p.phase;
      started = Date.now();
      lastQuarter = -1;
    }
    const fraction = p.totalBytes ? Math.min(1, p.doneBytes / p.totalBytes) : null;
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const rate = `${formatBytes(p.doneBytes / secs)}/s`;
    const amount = p.totalBytes
      ? `${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}`
      : formatBytes(p.doneBytes);
    if (tty) {
      const width = 30;
      const filled = fraction === null ? 0 : Math.round(fraction * width);
      const bar =
        fraction === null
          ? ''
          : `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${Math.round(fraction * 100)}% `;
      stream.write(`\r${LABEL[p.phase]} ${bar}${amount} ${rate}\x1b[K`);
      if (fraction === 1 && p.doneBytes === p.totalBytes) {
        stream.write('\n');
        phase = null;
      }
      return;
    }
    const quarter = fraction === null ? 0 : Math.floor(fraction * 4);
    if (quarter > lastQuarter) {
      lastQuarter = quarter;
      out.progress(`${LABEL[p.phase]} ${fraction === null ? '' : `${quarter * 25}% `}${amount} ${rate}`);
    }
  };
}
