// The wire schemas: one per API body (API-v1.md, docs/API-extensions.md).
// The daemon validates with them, /openapi.json is generated from them, and
// the SDK takes its types from them (type-only imports: no runtime cost).
// Depends on nothing but typebox. Each drives request validation,
// the TypeScript types (Static<>) and the OpenAPI document.
import Type, { type Static } from 'typebox';

export const TAG_PATTERN_SOURCE = '^[A-Za-z0-9_-]{1,64}$';

/** `code` names the kind of error (not_found, conflict, invalid_argument, …): branch on it, not on the text. */
export const ErrorBody = Type.Object({ error: Type.String(), code: Type.Optional(Type.String()) });

export const TagParams = Type.Object({ tag: Type.String() });
export const IdParams = Type.Object({ id: Type.String() });

export const SnapshotInfo = Type.Object({
  tag: Type.String(),
  dir: Type.String(),
  created_at_unix: Type.Integer(),
  branched_from: Type.Optional(Type.String()),
  pause_ms: Type.Optional(Type.Number()),
  diff_ms: Type.Optional(Type.Number()),
  diff_physical_bytes: Type.Optional(Type.Integer()),
  diff_logical_bytes: Type.Optional(Type.Integer()),
  warning: Type.Optional(Type.String()),
  status: Type.Union([Type.Literal('writing'), Type.Literal('ready'), Type.Literal('failed')]),
  bootable: Type.Boolean(),
});
export type SnapshotInfo = Static<typeof SnapshotInfo>;

export const SnapshotDetails = Type.Object({
  tag: Type.String(),
  dir: Type.String(),
  created_at_unix: Type.Optional(Type.Integer()),
  memory_logical_bytes: Type.Integer(),
  memory_physical_bytes: Type.Integer(),
  vmstate_bytes: Type.Integer(),
  parent_tag: Type.Optional(Type.String()),
  parent_content_hash: Type.Optional(Type.String()),
  /** This snapshot's own content hash, once computed (a diff has been made of it, or it is one). */
  content_hash: Type.Optional(Type.String()),
  chain_depth: Type.Integer(),
  dependents: Type.Array(Type.String()),
  ancestors: Type.Array(Type.String()),
  diff_ms: Type.Optional(Type.Number()),
  diff_physical_bytes: Type.Optional(Type.Integer()),
  diff_logical_bytes: Type.Optional(Type.Integer()),
  /** Set when the chain is broken (a parent missing, or replaced). */
  warning: Type.Optional(Type.String()),
});
export type SnapshotDetails = Static<typeof SnapshotDetails>;

/** Either `image` (a recipe) or `kernel` + `rootfs` (absolute host paths; the files are only read). */
export const CreateSnapshotBody = Type.Object({
  tag: Type.String(),
  /** A kernel QEMU's microvm boots: a bzImage or a vmlinux with a PVH note. */
  kernel: Type.Optional(Type.String()),
  /** An ext4 image with python3 (numpy is imported too when present); copied, never written. */
  rootfs: Type.Optional(Type.String()),
  image: Type.Optional(Type.String()),
  rw: Type.Optional(Type.Boolean()),
  /** Accepted and ignored (with a warning): the snapshot is taken when the guest reports ready. */
  boot_wait_secs: Type.Optional(Type.Number({ minimum: 0, maximum: 60 })),
  mem_mib: Type.Optional(Type.Integer({ minimum: 64, maximum: 65536 })),
});
export type CreateSnapshotBody = Static<typeof CreateSnapshotBody>;

export const DeleteSnapshotQuery = Type.Object({
  cascade: Type.Optional(Type.Boolean()),
  force: Type.Optional(Type.Boolean()),
});

/** Per-sandbox quotas (forkd extension); every field optional. */
export const QuotaFields = {
  /** A hard CPU cap in cores (0.5 = half a core). */
  cpu_cores: Type.Optional(Type.Number({ minimum: 0.01, maximum: 1024 })),
  /** CPU share under contention, 1..10000 (100 = default). */
  cpu_weight: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })),
  /** Threads and processes its QEMU may have (default 512). */
  pids_max: Type.Optional(Type.Integer({ minimum: 16, maximum: 4194304 })),
  io_read_bps: Type.Optional(Type.Integer({ minimum: 1 })),
  io_write_bps: Type.Optional(Type.Integer({ minimum: 1 })),
  io_read_iops: Type.Optional(Type.Integer({ minimum: 1 })),
  io_write_iops: Type.Optional(Type.Integer({ minimum: 1 })),
};
export const SandboxQuotas = Type.Object(QuotaFields);
export type SandboxQuotas = Static<typeof SandboxQuotas>;

export const SandboxUsage = Type.Object({
  cpu_ms: Type.Integer(),
  memory_bytes: Type.Integer(),
  io_read_bytes: Type.Integer(),
  io_write_bytes: Type.Integer(),
});

export const SandboxInfo = Type.Object({
  id: Type.String(),
  snapshot_tag: Type.String(),
  netns: Type.Union([Type.String(), Type.Null()]),
  guest_addr: Type.String(),
  created_at_unix: Type.Integer(),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  memory_limit_mib: Type.Union([Type.Integer(), Type.Null()]),
  has_branched: Type.Boolean(),
  last_branch_memory_path: Type.Union([Type.String(), Type.Null()]),
  branch_count: Type.Integer(),
  /** What the guest may connect to: none, internet, or allow:<domain|cidr>,… (forkd extension). */
  egress: Type.String(),
  /** Its quotas beside memory_limit_mib (forkd extension). */
  quotas: SandboxQuotas,
  /** What its QEMU used so far (forkd extension); null where the host has no cgroups. */
  usage: Type.Union([SandboxUsage, Type.Null()]),
  /** Whether its agent keeps to the protocol (forkd extension): a guest that sent garbage is reported here. */
  agent_health: Type.Object({
    healthy: Type.Boolean(),
    reason: Type.Union([Type.String(), Type.Null()]),
    channel_errors: Type.Integer(),
    /** The channel was given up; calls fail and the sandbox should be killed. */
    broken: Type.Boolean(),
  }),
});
export type SandboxInfo = Static<typeof SandboxInfo>;

export const CreateSandboxesBody = Type.Object({
  snapshot_tag: Type.String(),
  n: Type.Optional(Type.Integer({ default: 1 })),
  per_child_netns: Type.Optional(Type.Boolean()),
  memory_limit_mib: Type.Optional(Type.Integer({ minimum: 16 })),
  prewarm: Type.Optional(Type.Boolean()),
  /** none (default), internet, or allow:<domain|cidr>,… (forkd extension). */
  egress: Type.Optional(Type.String({ maxLength: 8192 })),
  live_fork: Type.Optional(Type.Boolean()),
  hugepages: Type.Optional(Type.Boolean()),
  ...QuotaFields,
});
export type CreateSandboxesBody = Static<typeof CreateSandboxesBody>;

export const BranchBody = Type.Object({
  tag: Type.Optional(Type.String()),
  mode: Type.Optional(Type.Union([Type.Literal('full'), Type.Literal('diff'), Type.Literal('live')])),
  diff: Type.Optional(Type.Boolean()),
  live: Type.Optional(Type.Boolean()),
  measure_diff: Type.Optional(Type.Boolean()),
  wait: Type.Optional(Type.Boolean()),
  parent_tag: Type.Optional(Type.String()),
});
export type BranchBody = Static<typeof BranchBody>;

/** `POST /v1/sandboxes/:id/fork` (forkd extension): a time-travel fork of a running sandbox. */
export const ForkRunningBody = Type.Object({
  k: Type.Integer(),
  /** `{name: [one value per child]}` or `[{name: value} × k]`; checked by the engine for clear errors. */
  vary: Type.Optional(Type.Unknown()),
  /** The intermediate snapshot's tag (default: `<sandbox id>-fork-<random>`). */
  tag: Type.Optional(Type.String()),
  /** Keep the intermediate snapshot (default: removed once the children run). */
  keep_snapshot: Type.Optional(Type.Boolean()),
  /** Best of k: run this in every child, rank them by the number it gives, keep the best `keep`. */
  score: Type.Optional(
    Type.Union([
      Type.Object(
        { exec: Type.Array(Type.String()), timeout_secs: Type.Optional(Type.Number()) },
        { additionalProperties: false },
      ),
      Type.Object(
        { eval: Type.String(), timeout_secs: Type.Optional(Type.Number()) },
        { additionalProperties: false },
      ),
    ]),
  ),
  /** With `score`: how many of the best children stay running (default 1). */
  keep: Type.Optional(Type.Integer()),
});
export type ForkRunningBody = Static<typeof ForkRunningBody>;

export const ForkedChild = Type.Intersect([
  SandboxInfo,
  Type.Object({
    variant: Type.Record(Type.String(), Type.Unknown()),
    /** With `score`: the child's score (null when its step failed or gave no number). */
    score: Type.Optional(Type.Union([Type.Number(), Type.Null()])),
    score_error: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    /** With `score`: whether it is among the best `keep`, still running; the others were killed. */
    kept: Type.Optional(Type.Boolean()),
  }),
]);

export const ForkRunningResult = Type.Object({
  source_id: Type.String(),
  snapshot_tag: Type.String(),
  snapshot_kept: Type.Boolean(),
  /** How long the source was paused for the branch. */
  pause_ms: Type.Number(),
  branch_ms: Type.Number(),
  spawn_ms: Type.Number(),
  /** In the order of the variants; with `score`, best first. */
  children: Type.Array(ForkedChild),
});
export type ForkRunningResult = Static<typeof ForkRunningResult>;

export const WorkspaceInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  source_snapshot_tag: Type.String(),
  current_state_tag: Type.Optional(Type.String()),
  status: Type.Union([Type.Literal('running'), Type.Literal('suspended'), Type.Literal('stale')]),
  live_sandbox_id: Type.Optional(Type.String()),
  created_at_unix: Type.Integer(),
  last_active_unix: Type.Integer(),
});
export type WorkspaceInfo = Static<typeof WorkspaceInfo>;

export const CreateWorkspaceBody = Type.Object({
  name: Type.String(),
  snapshot_tag: Type.String(),
  memory_limit_mib: Type.Optional(Type.Integer({ minimum: 16 })),
  /** Egress policy of its sandboxes, kept across resumes: none (default), internet, allow:<domain|cidr>,… */
  egress: Type.Optional(Type.String({ maxLength: 8192 })),
  /** The original's spelling: true is egress none (the default), an explicit false is internet. */
  restrict_egress: Type.Optional(Type.Boolean()),
  ...QuotaFields,
});

export const EgressBody = Type.Object({ egress: Type.String({ maxLength: 8192 }) });
export type EgressBody = Static<typeof EgressBody>;
export type CreateWorkspaceBody = Static<typeof CreateWorkspaceBody>;

export const SuspendWorkspaceBody = Type.Object({ diff: Type.Optional(Type.Boolean()) });

export const NameParams = Type.Object({ name: Type.String() });

/** Output kept for a buffered result; past it the command is killed and the result says truncated. */
const MaxOutputBytes = Type.Integer({ minimum: 0 });

export const ExecBody = Type.Object({
  args: Type.Array(Type.String()),
  timeout_secs: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  max_output_bytes: Type.Optional(MaxOutputBytes),
});
export type ExecBody = Static<typeof ExecBody>;

export const ExecResult = Type.Object({
  stdout: Type.String(),
  stderr: Type.String(),
  exit_code: Type.Integer(),
  /** An extension: the output passed max_output_bytes (the command was killed). */
  truncated: Type.Optional(Type.Boolean()),
});

export const EvalBody = Type.Object({ code: Type.String() });
export const EvalResult = Type.Object({
  /** As the original: the repr() of the last expression's value (null after a statement or an error). */
  result: Type.Union([Type.String(), Type.Null()]),
  /** A forkd extension: the same value as JSON, when it has one. */
  value: Type.Optional(Type.Unknown()),
  error: Type.Union([Type.String(), Type.Null()]),
  exit_code: Type.Integer(),
});

export const PingResult = Type.Object({
  pong: Type.Literal(true),
  /** The original's fields: numpy's version in a warm Python runtime that has it, else null. */
  numpy_version: Type.Union([Type.String(), Type.Null()]),
  /** The agent's pid in the guest. */
  pid: Type.Integer(),
  /** The warm runtime's language (python, node), or "none" without one. */
  agent_lang: Type.String(),
  warmup_ready: Type.Boolean(),
  agent_version: Type.String(),
  uptime_ms: Type.Number(),
  runtime: Type.Union([Type.Object({ kind: Type.String(), ready: Type.Boolean() }), Type.Null()]),
});

export const Health = Type.Object({ ok: Type.Boolean() });
export const Version = Type.Object({ version: Type.String(), api: Type.Literal('v1') });

// Extensions (docs/API-extensions.md).
export const CommandParams = Type.Object({ id: Type.String(), cid: Type.String() });
export const CommandBody = Type.Object({
  args: Type.Optional(Type.Array(Type.String())),
  cmd: Type.Optional(Type.String()),
  envs: Type.Optional(Type.Record(Type.String(), Type.String())),
  cwd: Type.Optional(Type.String()),
  stdin: Type.Optional(Type.String()),
  stdin_open: Type.Optional(Type.Boolean()),
  timeout_secs: Type.Optional(Type.Number({ minimum: 0 })),
  background: Type.Optional(Type.Boolean()),
});
export type CommandBody = Static<typeof CommandBody>;
export const CommandStarted = Type.Object({ command_id: Type.String() });
export const StdinBody = Type.Object({
  data: Type.Optional(Type.String()),
  eof: Type.Optional(Type.Boolean()),
});
export const KillBody = Type.Object({ signal: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })) });

export const PathQuery = Type.Object({ path: Type.String() });
export const WriteFileQuery = Type.Object({
  path: Type.String(),
  mode: Type.Optional(Type.String({ pattern: '^[0-7]{3,4}$' })),
});
export const RemoveFileQuery = Type.Object({ path: Type.String(), recursive: Type.Optional(Type.Boolean()) });
export const MkdirBody = Type.Object({ path: Type.String(), parents: Type.Optional(Type.Boolean()) });
export const FileInfo = Type.Object({
  name: Type.String(),
  type: Type.Union([
    Type.Literal('file'),
    Type.Literal('dir'),
    Type.Literal('symlink'),
    Type.Literal('other'),
  ]),
  size: Type.Number(),
  mode: Type.Integer(),
  mtime_ms: Type.Number(),
});

export const CompactBody = Type.Object({ to: Type.String() });

/** One line of a command's NDJSON stream (not a request body: streamed, so a type). */
export type CommandEvent =
  | { type: 'start'; command_id: string }
  | { type: 'stdout' | 'stderr'; data: string }
  | { type: 'exit'; exit_code: number; signal: string | null; timed_out: boolean }
  | { type: 'error'; error: string; code?: string };

/** `GET /v1/sandboxes/:id/browser`: a browser sandbox's CDP endpoint, through the daemon. */
export const BrowserInfo = Type.Object({
  /** ws:// (or wss://) URL of the browser target, built from the request's Host. */
  cdp_url: Type.String(),
  /** The same as a path on the daemon, for clients that know its address better. */
  cdp_path: Type.String(),
  /** The guest port Chromium's DevTools listen on (on the guest's loopback). */
  guest_port: Type.Integer(),
});

/** `GET /v1/tree` (forkd extension): snapshots depth-first, each after its parent. */
export const SnapshotTree = Type.Object({
  snapshots: Type.Array(
    Type.Object({
      tag: Type.String(),
      parent: Type.Union([Type.String(), Type.Null()]),
      depth: Type.Integer(),
      status: Type.String(),
      /** Bytes its files take on disk. */
      bytes: Type.Number(),
      branched_from_sandbox: Type.Union([Type.String(), Type.Null()]),
      /** The parent it names is gone (a fork's intermediate snapshot, a deleted tag). */
      parent_missing: Type.Union([Type.String(), Type.Null()]),
      /** Running sandboxes restored from it. */
      sandboxes: Type.Array(Type.String()),
    }),
  ),
});
