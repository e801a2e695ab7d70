// The daemon's registry on disk: an embedded SQLite database of the
// sandboxes it handed out (and how each ended) and the snapshots it knows.
// Files stay the source of truth for a snapshot's contents; the database is
// what lets a restarted daemon know which sandboxes were its own, re-attach
// the live ones and account for the dead.
import Database from 'better-sqlite3';
import type { SandboxInfo } from '../engine/index.js';
import type { E2bRecord } from './e2b/records.js';

export type SandboxState = 'running' | 'killed' | 'dead';

export interface SandboxRow {
  id: string;
  snapshot_tag: string;
  pid: number;
  run_dir: string;
  created_at_unix: number;
  memory_limit_mib: number | null;
  state: SandboxState;
  ended_at_unix: number | null;
}

const MIGRATIONS = [
  `CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY,
     snapshot_tag TEXT NOT NULL,
     pid INTEGER NOT NULL,
     run_dir TEXT NOT NULL,
     created_at_unix INTEGER NOT NULL,
     memory_limit_mib INTEGER,
     state TEXT NOT NULL CHECK (state IN ('running', 'killed', 'dead')),
     ended_at_unix INTEGER
   );
   CREATE INDEX sandboxes_state ON sandboxes(state);
   CREATE TABLE snapshots (
     tag TEXT PRIMARY KEY,
     status TEXT NOT NULL,
     created_at_unix INTEGER NOT NULL
   );`,
  `CREATE TABLE workspaces (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     source_snapshot_tag TEXT NOT NULL,
     current_state_tag TEXT,
     status TEXT NOT NULL CHECK (status IN ('running', 'suspended')),
     live_sandbox_id TEXT,
     memory_limit_mib INTEGER,
     restrict_egress INTEGER NOT NULL DEFAULT 0,
     created_at_unix INTEGER NOT NULL,
     last_active_unix INTEGER NOT NULL
   );`,
  // Egress policies replaced the restricted/unrestricted switch; NULL: a row from before (see egressOf).
  `ALTER TABLE workspaces ADD COLUMN egress TEXT;`,
  // Quotas beside the memory limit, as JSON (SandboxLimits); NULL: none.
  `ALTER TABLE workspaces ADD COLUMN limits TEXT;`,
  // E2B sandboxes (src/daemon/e2b): each record as JSON, keyed by E2B's sandbox id.
  `CREATE TABLE e2b_sandboxes (id TEXT PRIMARY KEY, record TEXT NOT NULL);`,
];

/** A workspace as stored; "stale" is worked out from what is running. */
export interface WorkspaceRow {
  id: string;
  name: string;
  source_snapshot_tag: string;
  current_state_tag: string | null;
  status: 'running' | 'suspended';
  live_sandbox_id: string | null;
  memory_limit_mib: number | null;
  /** Rows from before egress policies: 1 was default-deny egress, 0 unfiltered. */
  restrict_egress: number;
  /** The egress policy (formatEgress spelling); NULL in rows written before it existed. */
  egress: string | null;
  /** Quotas (SandboxLimits as JSON), memory included; NULL: only memory_limit_mib. */
  limits: string | null;
  created_at_unix: number;
  last_active_unix: number;
}

export class StateDb {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]!);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  recordSandbox(info: SandboxInfo): void {
    this.db
      .prepare(
        `INSERT INTO sandboxes (id, snapshot_tag, pid, run_dir, created_at_unix, memory_limit_mib, state)
         VALUES (@id, @snapshotTag, @pid, @runDir, @createdAtUnix, @memoryLimitMib, 'running')
         ON CONFLICT(id) DO UPDATE SET state = 'running', pid = excluded.pid, ended_at_unix = NULL`,
      )
      .run({
        id: info.id,
        snapshotTag: info.snapshotTag,
        pid: info.pid,
        runDir: info.runDir,
        createdAtUnix: info.createdAtUnix,
        memoryLimitMib: info.memoryLimitMib,
      });
  }

  endSandbox(id: string, state: Exclude<SandboxState, 'running'>): void {
    this.db
      .prepare(`UPDATE sandboxes SET state = ?, ended_at_unix = ? WHERE id = ? AND state = 'running'`)
      .run(state, Math.floor(Date.now() / 1000), id);
  }

  sandboxes(state?: SandboxState): SandboxRow[] {
    const rows = state
      ? this.db.prepare(`SELECT * FROM sandboxes WHERE state = ? ORDER BY created_at_unix, id`).all(state)
      : this.db.prepare(`SELECT * FROM sandboxes ORDER BY created_at_unix, id`).all();
    return rows as SandboxRow[];
  }

  /** Make the snapshots table say what the store on disk says. */
  syncSnapshots(snapshots: readonly { tag: string; status: string; createdAtUnix: number }[]): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM snapshots').run();
      const insert = this.db.prepare('INSERT INTO snapshots (tag, status, created_at_unix) VALUES (?, ?, ?)');
      for (const s of snapshots) insert.run(s.tag, s.status, s.createdAtUnix);
    })();
  }

  snapshotTags(): string[] {
    return (this.db.prepare('SELECT tag FROM snapshots ORDER BY tag').all() as { tag: string }[]).map(
      (r) => r.tag,
    );
  }

  insertWorkspace(row: WorkspaceRow): void {
    this.db
      .prepare(
        `INSERT INTO workspaces (id, name, source_snapshot_tag, current_state_tag, status, live_sandbox_id,
           memory_limit_mib, restrict_egress, egress, limits, created_at_unix, last_active_unix)
         VALUES (@id, @name, @source_snapshot_tag, @current_state_tag, @status, @live_sandbox_id,
           @memory_limit_mib, @restrict_egress, @egress, @limits, @created_at_unix, @last_active_unix)`,
      )
      .run(row);
  }

  workspace(name: string): WorkspaceRow | null {
    return (
      (this.db.prepare('SELECT * FROM workspaces WHERE name = ?').get(name) as WorkspaceRow | undefined) ??
      null
    );
  }

  workspaces(): WorkspaceRow[] {
    return this.db.prepare('SELECT * FROM workspaces ORDER BY created_at_unix, name').all() as WorkspaceRow[];
  }

  updateWorkspace(
    name: string,
    patch: Pick<WorkspaceRow, 'status' | 'live_sandbox_id' | 'current_state_tag'>,
  ): void {
    this.db
      .prepare(
        `UPDATE workspaces SET status = @status, live_sandbox_id = @live_sandbox_id,
           current_state_tag = @current_state_tag, last_active_unix = @now WHERE name = @name`,
      )
      .run({ ...patch, name, now: Math.floor(Date.now() / 1000) });
  }

  deleteWorkspace(name: string): void {
    this.db.prepare('DELETE FROM workspaces WHERE name = ?').run(name);
  }

  putE2bRecord(record: E2bRecord): void {
    this.db
      .prepare(
        'INSERT INTO e2b_sandboxes (id, record) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record',
      )
      .run(record.id, JSON.stringify(record));
  }

  e2bRecords(): E2bRecord[] {
    return (
      this.db.prepare('SELECT record FROM e2b_sandboxes ORDER BY id').all() as { record: string }[]
    ).map((r) => JSON.parse(r.record) as E2bRecord);
  }

  deleteE2bRecord(id: string): void {
    this.db.prepare('DELETE FROM e2b_sandboxes WHERE id = ?').run(id);
  }

  close(): void {
    this.db.close();
  }
}
