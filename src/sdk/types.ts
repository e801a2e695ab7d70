// The wire types of the daemon's REST API, snake_case as on the wire. They are
// the Static<> types of the schemas the daemon validates with (src/api), so
// the SDK and the daemon cannot drift; the imports are type-only, so the SDK
// still loads nothing but its own files at run time.
import type { Static } from 'typebox';
import type * as wire from '../api/schemas.js';

/** A snapshot as listed and created (`GET/POST /v1/snapshots`). */
export type SnapshotInfo = Static<typeof wire.SnapshotInfo>;

/** Sizes and lineage of one snapshot (`GET /v1/snapshots/:tag/info`); `ancestors` root first. */
export type SnapshotDetails = Static<typeof wire.SnapshotDetails>;

/** A running child VM (`GET/POST /v1/sandboxes`). */
export type SandboxInfo = Static<typeof wire.SandboxInfo>;

/** What `POST /v1/sandboxes/:id/fork` answers: the children in the order of their variants. */
export type ForkResult = Static<typeof wire.ForkRunningResult>;

/** What `GET /v1/tree` answers. */
export type SnapshotTree = Static<typeof wire.SnapshotTree>;

/** Where a browser sandbox's CDP endpoint is (`GET /v1/sandboxes/:id/browser`). */
export type BrowserInfo = Static<typeof wire.BrowserInfo>;

/** A named, suspendable sandbox (`/v1/workspaces`). */
export type WorkspaceInfo = Static<typeof wire.WorkspaceInfo>;

/** `GET /healthz`. */
export type HealthInfo = Static<typeof wire.Health>;

/** `GET /version`. */
export type VersionInfo = Static<typeof wire.Version>;

/** `POST /v1/sandboxes/:id/ping`. */
export type PingResult = Static<typeof wire.PingResult>;

/** `POST /v1/sandboxes/:id/exec`: the whole output, after the command ended. */
export type ExecResult = Static<typeof wire.ExecResult>;

/** `POST /v1/sandboxes/:id/eval`: `result` is null when `error` is set. */
export type EvalResult = Static<typeof wire.EvalResult>;

/** One line of a command's NDJSON stream (`/commands`, `/commands/:cid/events`). */
export type CommandEvent = wire.CommandEvent;

/** `POST /v1/sandboxes/:id/commands` with `background: true`. */
export type StartedCommand = Static<typeof wire.CommandStarted>;

/** What `GET .../files/list` and `GET .../files/stat` return per entry; `mode` is the permission bits (0o644 = 420). */
export type FileEntry = Static<typeof wire.FileInfo>;
