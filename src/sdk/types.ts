// The wire types of the daemon's REST API, declared here (not imported from
// the daemon) so the SDK stays an HTTP client with no engine code. Field
// names are snake_case exactly as on the wire: API-v1.md and API-extensions.md.

/** A snapshot as listed and created (`GET/POST /v1/snapshots`). */
export interface SnapshotInfo {
  tag: string;
  dir: string;
  created_at_unix: number;
  branched_from?: string;
  pause_ms?: number;
  diff_ms?: number;
  diff_physical_bytes?: number;
  diff_logical_bytes?: number;
  warning?: string;
  status: 'writing' | 'ready' | 'failed';
  bootable: boolean;
}

/** Sizes and lineage of one snapshot (`GET /v1/snapshots/:tag/info`). */
export interface SnapshotDetails {
  tag: string;
  dir: string;
  created_at_unix?: number;
  memory_logical_bytes: number;
  memory_physical_bytes: number;
  vmstate_bytes: number;
  parent_tag?: string;
  parent_content_hash?: string;
  chain_depth: number;
  dependents: string[];
  /** Root first, parent last. */
  ancestors: string[];
}

/** A running child VM (`GET/POST /v1/sandboxes`). */
export interface SandboxInfo {
  id: string;
  snapshot_tag: string;
  netns: string | null;
  guest_addr: string;
  created_at_unix: number;
  pid: number | null;
  memory_limit_mib: number | null;
  has_branched: boolean;
  last_branch_memory_path: string | null;
  branch_count: number;
}

/** `GET /healthz`. */
export interface HealthInfo {
  ok: boolean;
}

/** `GET /version`. */
export interface VersionInfo {
  version: string;
  api: string;
}

/** `POST /v1/sandboxes/:id/ping`; the daemon may add fields beyond `pong`. */
export interface PingResult {
  pong: true;
  agent_version?: string;
  uptime_ms?: number;
  runtime?: { kind: string; ready: boolean } | null;
  [extra: string]: unknown;
}

/** `POST /v1/sandboxes/:id/exec`: the whole output, after the command ended. */
export interface ExecResult {
  stdout: string;
  stderr: string;
  exit_code: number;
}

/** `POST /v1/sandboxes/:id/eval`: `result` is null when `error` is set. */
export interface EvalResult {
  result: unknown;
  error: string | null;
  exit_code: number;
}

/** One line of a command's NDJSON stream (`/commands`, `/commands/:cid/events`). */
export type CommandEvent =
  | { type: 'start'; command_id: string }
  | { type: 'stdout' | 'stderr'; data: string }
  | { type: 'exit'; exit_code: number; signal: string | null; timed_out: boolean }
  | { type: 'error'; error: string };

/** `POST /v1/sandboxes/:id/commands` with `background: true`. */
export interface StartedCommand {
  command_id: string;
}

/** What `GET .../files/list` and `GET .../files/stat` return per entry. */
export interface FileEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  /** Permission bits as a number (e.g. 0o644 = 420). */
  mode: number;
  mtime_ms: number;
}
