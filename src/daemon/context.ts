// What every route handler receives.
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Engine } from '../engine/index.js';
import type { DaemonMetrics } from './metrics.js';
import type { SandboxRegistry } from './sandbox-registry.js';
import type { StateDb } from './state-db.js';
import type { BranchJobs } from './branch-jobs.js';

/** Per-call limits the daemon enforces on what a guest sends back. */
export interface DaemonLimits {
  /** The most exec output a call may ask to keep (`max_output_bytes`). */
  maxOutputBytes: number;
}

export interface DaemonContext {
  engine: Engine;
  limits: DaemonLimits;
  registry: SandboxRegistry;
  metrics: DaemonMetrics;
  db: StateDb;
  branches: BranchJobs;
}

export type App = FastifyInstance<
  import('node:http').Server,
  import('node:http').IncomingMessage,
  import('node:http').ServerResponse,
  import('fastify').FastifyBaseLogger,
  TypeBoxTypeProvider
>;
