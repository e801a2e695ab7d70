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
export { claimDataDir, daemonOwner, type DaemonLock, type DaemonOwner } from './daemon-lock.js';
export type { SandboxLimits, SandboxUsage } from './cgroups.js';
export { DEFAULT_EGRESS, formatEgress, parseEgress, type EgressPolicy } from './egress.js';
export { WarmPool, type PoolOptions } from './pool.js';
export { checkGuestPort, connectGuestPort } from './guest-port.js';
export { checkForkCount, MAX_FORK_K, variantsFor, type Variant, type VarySpec } from './variants.js';
export { BROWSER_CDP_PORT, browserTargetPath } from './browser-cdp.js';
export type { BranchOptions, BranchResult, BranchTimings } from './branch.js';
export { diffFromChange, type DiffFromChangeRequest } from './diff-from-change.js';
export type { PackResult } from '../hub/pack.js';
export type { UnpackResult } from '../hub/unpack.js';
export type { PullResult } from '../hub/pull.js';
export type { TransferPhase, TransferProgress, TransferProgressFn } from '../hub/progress.js';
export type { SnapshotManifest } from '../snapshot/manifest.js';
export * from '../errors.js';
