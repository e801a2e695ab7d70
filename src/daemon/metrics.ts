// Prometheus metrics (API-v1.md names), on a registry of our own so tests can
// run several daemons in one process.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { SandboxUsage } from '../engine/index.js';
import { FORKD_VERSION } from '../version.js';

export interface DaemonMetrics {
  registry: Registry;
  spawnSeconds: Histogram;
  execSeconds: Histogram;
  requests: Counter;
}

export function createMetrics(sources: {
  snapshots: () => Promise<number>;
  sandboxes: () => number;
  branches: () => number;
  branchCap: number;
  /** Per-sandbox resource usage (from its cgroups). */
  usage: () => Promise<{ id: string; usage: SandboxUsage }[]>;
  /** Per-sandbox agent channel state. */
  agentHealth: () => { id: string; healthy: boolean; channelErrors: number }[];
}): DaemonMetrics {
  const registry = new Registry();
  // One scrape reads every sandbox's cgroups once; the three gauges share it.
  let scrape: Promise<{ id: string; usage: SandboxUsage }[]> | null = null;
  const usage = () => {
    scrape ??= sources.usage().finally(() => setImmediate(() => (scrape = null)));
    return scrape;
  };
  new Gauge({
    name: 'forkd_sandbox_cpu_seconds',
    help: "CPU time a sandbox's QEMU has used",
    labelNames: ['sandbox'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { id, usage: u } of await usage()) this.labels(id).set(u.cpuMs / 1000);
    },
  });
  new Gauge({
    name: 'forkd_sandbox_agent_healthy',
    help: "1 while a sandbox's agent keeps to the protocol, 0 after it sent garbage",
    labelNames: ['sandbox'],
    registers: [registry],
    collect() {
      this.reset();
      for (const h of sources.agentHealth()) this.labels(h.id).set(h.healthy ? 1 : 0);
    },
  });
  new Gauge({
    name: 'forkd_sandbox_agent_channel_errors',
    help: "Protocol violations on a sandbox's agent channel (each cost a reconnect)",
    labelNames: ['sandbox'],
    registers: [registry],
    collect() {
      this.reset();
      for (const h of sources.agentHealth()) this.labels(h.id).set(h.channelErrors);
    },
  });
  new Gauge({
    name: 'forkd_sandbox_memory_bytes',
    help: "Memory a sandbox's QEMU is charged for",
    labelNames: ['sandbox'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { id, usage: u } of await usage()) this.labels(id).set(u.memoryBytes);
    },
  });
  new Gauge({
    name: 'forkd_sandbox_io_bytes',
    help: "Disk bytes a sandbox's QEMU has read or written (direct to the device)",
    labelNames: ['sandbox', 'direction'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const { id, usage: u } of await usage()) {
        this.labels(id, 'read').set(u.ioReadBytes);
        this.labels(id, 'write').set(u.ioWriteBytes);
      }
    },
  });
  new Gauge({
    name: 'forkd_snapshots_total',
    help: 'Snapshots in the store',
    registers: [registry],
    async collect() {
      this.set(await sources.snapshots());
    },
  });
  new Gauge({
    name: 'forkd_sandboxes_active',
    help: 'Sandboxes running',
    registers: [registry],
    collect() {
      this.set(sources.sandboxes());
    },
  });
  new Gauge({
    name: 'forkd_branches_in_flight',
    help: 'Branches being written',
    registers: [registry],
    collect() {
      this.set(sources.branches());
    },
  });
  new Gauge({
    name: 'forkd_branch_concurrency_cap',
    help: 'Branches allowed at once',
    registers: [registry],
  }).set(sources.branchCap);
  new Gauge({ name: 'forkd_build_info', help: 'forkd build', labelNames: ['version'], registers: [registry] })
    .labels(FORKD_VERSION)
    .set(1);
  const buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
  return {
    registry,
    spawnSeconds: new Histogram({
      name: 'forkd_spawn_seconds',
      help: 'POST /v1/sandboxes until all children answer',
      buckets,
      registers: [registry],
    }),
    execSeconds: new Histogram({
      name: 'forkd_exec_seconds',
      help: 'exec round trip through the API',
      buckets,
      registers: [registry],
    }),
    requests: new Counter({
      name: 'forkd_http_requests_total',
      help: 'HTTP requests',
      labelNames: ['method', 'status'],
      registers: [registry],
    }),
  };
}
