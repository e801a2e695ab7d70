// Engine values → API-v1 wire shapes.
import { formatEgress } from '../engine/index.js';
import type { Sandbox } from '../engine/index.js';
import { createdAtUnix, diffSizes, type SnapshotManifest } from '../snapshot/manifest.js';
import type { SnapshotRecord } from '../snapshot/store.js';
import type { SandboxInfo, SandboxQuotas, SnapshotInfo } from '../api/schemas.js';
import type { SandboxLimits } from '../engine/index.js';

/**
 * The original's guest_addr is the in-guest agent's host:port, and its
 * Python SDK splits it on ':'. Ours has no TCP agent (it speaks over
 * virtio-serial): the guest's address with port 0 parses the same way and
 * names no port anyone could dial.
 */
export const GUEST_ADDR = '10.0.2.15:0';

export function snapshotInfo(record: SnapshotRecord): SnapshotInfo {
  const m = record.manifest;
  return {
    tag: record.tag,
    dir: record.dir,
    created_at_unix: m ? createdAtUnix(m) : 0,
    status: m?.status ?? 'failed',
    bootable: m?.status === 'ready',
    // As the original: a live branch names the sandbox it was taken from (the snapshot it ran is parent_tag's business).
    ...(m?.branch
      ? { branched_from: m.branch.sandboxId }
      : m?.branchedFrom
        ? { branched_from: m.branchedFrom }
        : {}),
    ...(m?.branch ? { pause_ms: m.branch.pauseMs } : {}),
    ...(m ? diffView(m) : {}),
    ...(m?.warning ? { warning: m.warning } : record.problem ? { warning: record.problem } : {}),
  };
}

/** A diff link's sizes (RAM pages and disk clusters written since its parent) and cost. */
export function diffView(m: SnapshotManifest): {
  diff_ms?: number;
  diff_physical_bytes?: number;
  diff_logical_bytes?: number;
} {
  const sizes = diffSizes(m);
  if (!m.diff || !sizes) return {};
  return {
    diff_ms: m.diff.ms,
    diff_physical_bytes: sizes.physicalBytes,
    diff_logical_bytes: sizes.logicalBytes,
  };
}

/** Quota fields of a request body → engine limits (memory comes from memory_limit_mib). */
export function limitsFromBody(body: SandboxQuotas & { memory_limit_mib?: number }): SandboxLimits {
  return {
    memoryMib: body.memory_limit_mib ?? null,
    cpuCores: body.cpu_cores ?? null,
    cpuWeight: body.cpu_weight ?? null,
    pidsMax: body.pids_max ?? null,
    ioReadBps: body.io_read_bps ?? null,
    ioWriteBps: body.io_write_bps ?? null,
    ioReadIops: body.io_read_iops ?? null,
    ioWriteIops: body.io_write_iops ?? null,
  };
}

function quotasView(l: SandboxLimits = {}): SandboxQuotas {
  const out: SandboxQuotas = {};
  if (l.cpuCores) out.cpu_cores = l.cpuCores;
  if (l.cpuWeight) out.cpu_weight = l.cpuWeight;
  if (l.pidsMax) out.pids_max = l.pidsMax;
  if (l.ioReadBps) out.io_read_bps = l.ioReadBps;
  if (l.ioWriteBps) out.io_write_bps = l.ioWriteBps;
  if (l.ioReadIops) out.io_read_iops = l.ioReadIops;
  if (l.ioWriteIops) out.io_write_iops = l.ioWriteIops;
  return out;
}

export async function sandboxInfo(
  sandbox: Sandbox,
  branches: { count: number; lastMemoryPath: string | null } = { count: 0, lastMemoryPath: null },
): Promise<SandboxInfo> {
  const i = sandbox.info;
  const usage = await sandbox.usage().catch(() => null);
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
    quotas: quotasView(i.limits),
    usage: usage && {
      cpu_ms: usage.cpuMs,
      memory_bytes: usage.memoryBytes,
      io_read_bytes: usage.ioReadBytes,
      io_write_bytes: usage.ioWriteBytes,
    },
    agent_health: agentHealthView(sandbox),
  };
}

function agentHealthView(sandbox: Sandbox): SandboxInfo['agent_health'] {
  const h = sandbox.agent.health;
  return { healthy: h.healthy, reason: h.reason, channel_errors: h.channelErrors, broken: h.broken };
}
