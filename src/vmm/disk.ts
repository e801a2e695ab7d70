// qcow2 disk layers. Every VM writes only to its own overlay; the layers
// below it are frozen, so no two VMs ever write one image.
import { run } from '../util/run.js';

/** A new qcow2 overlay at `path` over `backing` (a relative backing path resolves from the overlay's dir). */
export async function createOverlay(
  path: string,
  backing: { path: string; format: 'qcow2' | 'raw' },
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  await run(
    ['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', backing.path, '-F', backing.format, path],
    opts,
  );
}

export interface DiskImageInfo {
  format: string;
  backingFile: string | null;
  backingFormat: string | null;
  /** A qcow2 external data file: another path QEMU would open. */
  dataFile: string | null;
}

/** What `qemu-img info` says about one image (without following its backing chain). */
export async function inspectDiskImage(path: string, format: 'qcow2' | 'raw'): Promise<DiskImageInfo> {
  const { stdout } = await run(['qemu-img', 'info', '--output=json', '-f', format, path]);
  const info = JSON.parse(stdout) as {
    format?: string;
    'backing-filename'?: string;
    'backing-filename-format'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  return {
    format: info.format ?? 'unknown',
    backingFile: info['backing-filename'] ?? null,
    backingFormat: info['backing-filename-format'] ?? null,
    dataFile: info['format-specific']?.data?.['data-file'] ?? null,
  };
}
