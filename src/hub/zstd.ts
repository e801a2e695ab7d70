// zstd as a streaming filter. Node 20's zlib has no zstd, and the reference
// `zstd` program (Debian's zstd package) is multi-threaded, streams, and does
// long-distance matching, which finds the guest's page cache in the RAM file
// again in the disk image (a quarter off a python-numpy pack).
import { launch } from '../util/launcher.js';
import type { Readable, Writable } from 'node:stream';
import { exitFailure, missingProgram } from '../util/run.js';

/** The long-distance window packs are written with; unpack refuses larger ones (memory). */
export const PACK_WINDOW_LOG = 29;

export interface ZstdFilter {
  input: Writable;
  output: Readable;
  /** Resolves when zstd exits 0; rejects with its stderr otherwise. */
  exited: Promise<void>;
  kill(): void;
}

function spawnZstd(args: string[]): ZstdFilter {
  const child = launch(['zstd', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  if (!child.stdin || !child.stdout || !child.stderr) throw new Error('zstd: pipes missing');
  const { stdin, stdout } = child;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-2048);
  });
  // EPIPE on stdin when zstd stops early is reported through the exit status.
  stdin.on('error', () => {});
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? missingProgram('zstd') : err),
    );
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      reject(exitFailure(['zstd', ...args], code, signal, stderr, 2));
    });
  });
  return {
    input: stdin,
    output: stdout,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

export function zstdCompress(opts: { level: number; threads?: number }): ZstdFilter {
  return spawnZstd([
    '-q',
    ...(opts.level > 19 ? ['--ultra'] : []),
    `-${opts.level}`,
    `-T${opts.threads ?? 0}`,
    `--long=${PACK_WINDOW_LOG}`,
    '-c',
  ]);
}

/** Decompression refuses frames whose window exceeds the pack window (a memory bomb). */
export function zstdDecompress(): ZstdFilter {
  return spawnZstd(['-q', '-d', `--long=${PACK_WINDOW_LOG}`, '-c']);
}
