// forkd/sdk: the whole public surface of the TypeScript SDK, an HTTP client
// for the forkd daemon. Named exports only; nothing here reaches the engine.
export { Controller } from './controller.js';
export type {
  BranchParams,
  ForkParams,
  CommandParams,
  ControllerOptions,
  CreateSandboxesParams,
  SandboxQuotaParams,
  CreateSnapshotParams,
  DeleteSnapshotOpts,
  ExecOpts,
  KillCommandOpts,
  MkdirOpts,
  RemoveOpts,
  SendStdinOpts,
  WriteFileOpts,
} from './controller.js';
export { Sandbox } from './sandbox.js';
export type { ForkedSandbox, SandboxConnectOpts, SandboxCreateOpts } from './sandbox.js';
export { CommandHandle, Commands } from './commands.js';
export type { CommandOutputOpts, CommandResult, CommandRunOpts, CommandWaitOpts } from './commands.js';
export { SandboxBrowser, type CdpConnectOptions } from './browser.js';
export { Files } from './files.js';
export type { EntryInfo, FileReadOpts, FileRemoveOpts, FileWriteOpts } from './files.js';
export {
  AbortedError,
  AgentUnavailableError,
  AlreadyExistsError,
  CommandExitError,
  ConflictError,
  ControllerError,
  ForbiddenError,
  InsufficientStorageError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  SandboxEvalError,
  TimeoutError,
  TooLargeError,
  UnauthorizedError,
  errorFromEvent,
} from './errors.js';
export type { ControllerErrorDetails } from './errors.js';
export type { RequestOpts } from './http.js';
export type {
  BrowserInfo,
  CommandEvent,
  ForkResult,
  EvalResult,
  ExecResult,
  FileEntry,
  HealthInfo,
  PingResult,
  SandboxInfo,
  SnapshotDetails,
  SnapshotInfo,
  SnapshotTree,
  StartedCommand,
  VersionInfo,
  WorkspaceInfo,
} from './types.js';
