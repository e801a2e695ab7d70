// Prometheus metrics (API-v1.md names), on a registry of our own so tests can
// run several daemons in one process.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
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
}): DaemonMetrics {
  const registry = new Registry();
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
