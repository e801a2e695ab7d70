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
