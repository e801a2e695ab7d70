// Disk layers of a running VM, through QMP: which node its disk writes to,
// freezing that layer under a fresh overlay (the guest goes on writing the
// new one), streaming a frozen layer up into the overlay so the chain stays
// short, and flattening frozen layers into one file with qemu-img.
import { QmpError } from '../errors.js';
import { deadlineSignal, type CallOptions } from '../util/abort.js';
import { run } from '../util/run.js';
import type { QmpClient } from './qmp.js';

export interface DiskNode {
  /** QMP's node name for the layer the disk device writes to. */
  node: string;
  /** That layer's file. */
  file: string;
}

/** The node the VM's disk device writes to now (it changes with every freeze). */
export async function activeDiskNode(qmp: QmpClient, opts: CallOptions = {}): Promise<DiskNode> {
  type BlockInfo = { inserted?: { 'node-name'?: string; image?: { filename?: string } } };
  const blocks = await qmp.execute<BlockInfo[]>('query-block', undefined, opts);
  const disk = blocks.find((b) => b.inserted?.['node-name'] && b.inserted.image?.filename);
  if (!disk?.inserted?.['node-name'] || !disk.inserted.image?.filename) {
    throw new QmpError('the VM has no disk node to freeze', 'query-block', undefined);
  }
  return { node: disk.inserted['node-name'], file: disk.inserted.image.filename };
}

/**
 * Freeze the layer `active` writes to: QEMU creates `overlay.file` (qcow2,
 * backed by it) as node `overlay.node` and moves the device onto it. Done
 * while the VM is paused, the frozen layer is exactly the disk at that moment.
 */
export async function freezeDiskLayer(
  qmp: QmpClient,
  active: DiskNode,
  overlay: DiskNode,
  opts: CallOptions = {},
): Promise<void> {
  await qmp.execute(
    'blockdev-snapshot-sync',
    {
      'node-name': active.node,
      'snapshot-file': overlay.file,
      'snapshot-node-name': overlay.node,
      format: 'qcow2',
    },
    opts,
  );
}

/**
 * Copy the data of every layer between node `top` and the file `base` into
 * `top` (a background job; the guest keeps running), after which they are no
 * longer in its chain. `jobId` must be unique in this QEMU.
 */
export async function streamIntoLayer(
  qmp: QmpClient,
  layers: { top: string; base: string; jobId: string },
  opts: CallOptions = {},
): Promise<void> {
  const done = qmp.waitForEvent('BLOCK_JOB_COMPLETED', (e) => e.data?.device === layers.jobId, {
    signal: opts.signal,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
  done.catch(() => undefined);
  await qmp.execute(
    'block-stream',
    { 'job-id': layers.jobId, device: layers.top, base: layers.base },
    { signal: opts.signal },
  );
  const end = await done;
  if (typeof end.data?.error === 'string') {
    throw new QmpError(`streaming the disk layer failed: ${end.data.error}`, 'block-stream', undefined);
  }
}

/**
 * Write `top` and the qcow2 layers under it as one qcow2 layer at `out`,
 * backed by the raw image `baseName` (relative to `out`'s dir, which is
 * `cwd`): only what differs from the base is written.
 */
export async function flattenDiskLayers(
  top: string,
  out: string,
  base: { name: string; cwd: string },
  opts: CallOptions = {},
): Promise<void> {
  // -U: the layers may still be open in a running QEMU (frozen: nothing writes them).
  await run(
    ['qemu-img', 'convert', '-q', '-U', '-f', 'qcow2', '-O', 'qcow2', '-B', base.name, '-F', 'raw', top, out],
    { signal: deadlineSignal(opts, 'flattening disk layers'), cwd: base.cwd },
  );
}
