// The engine's public surface, used by the CLI and the daemon.
export { Engine, type EngineOptions, type SnapshotRequest } from './engine.js';
export { Sandbox, type SandboxInfo } from './sandbox.js';
export {
  MAX_CHILDREN,
  checkChildCount,
  type ChildResult,
  type RestoreOptions,
  type RestoreResult,
} from './fork.js';
export type { CleanupReport } from './cleanup.js';
export { WarmPool, type PoolOptions } from './pool.js';
export * from '../errors.js';
