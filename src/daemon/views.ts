// Engine values → API-v1 wire shapes.
import { formatEgress } from '../engine/index.js';
import type { Sandbox } from '../engine/index.js';
import { createdAtUnix } from '../snapshot/manifest.js';
import type { SnapshotRecord } from '../snapshot/store.js';
import type { SandboxInfo, SnapshotInfo } from '../api/schemas.js';

/** Every child's user-mode network gives it this address. */
export const GUEST_ADDR = '10.0.2.15';

export function snapshotInfo(record: SnapshotRecord): SnapshotInfo {
  const m = record.manifest;
  return {
    tag: record.tag,
    dir: record.dir,
    created_at_unix: m ? createdAtUnix(m) : 0,
    status: m?.status ?? 'failed',
    bootable: m?.status === 'ready',
    ...(m?.branchedFrom ? { branched_from: m.branchedFrom } : {}),
    ...(m?.branch ? { pause_ms: m.branch.pauseMs } : {}),
    ...(m?.warning ? { warning: m.warning } : record.problem ? { warning: record.problem } : {}),
  };
}

export function sandboxInfo(
  sandbox: Sandbox,
  branches: { count: number; lastMemoryPath: string | null } = { count: 0, lastMemoryPath: null },
): SandboxInfo {
  const i = sandbox.info;
  return {
    id: i.id,
    snapshot_tag: i.snapshotTag,
    // Truthful per_child_netns: a guest with no egress is in a network namespace of its own.
    netns: i.hostNetwork ? null : `/proc/${i.pid}/ns/net`,
    guest_addr: GUEST_ADDR,
    created_at_unix: i.createdAtUnix,
    pid: i.pid,
    memory_limit_mib: i.memoryLimitMib,
    has_branched: branches.count > 0,
    last_branch_memory_path: branches.lastMemoryPath,
    branch_count: branches.count,
    egress: formatEgress(i.egress),
  };
}
