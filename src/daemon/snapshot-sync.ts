// Keeps the database's snapshot table in step with the store on disk (the
// store wins: it is what restores read).
import type { Engine } from '../engine/index.js';
import { createdAtUnix } from '../snapshot/manifest.js';
import type { StateDb } from './state-db.js';

export async function syncSnapshotTable(engine: Engine, db: StateDb): Promise<void> {
  db.syncSnapshots(
    (await engine.store.list()).map((r) => ({
      tag: r.tag,
      status: r.manifest?.status ?? 'failed',
      createdAtUnix: r.manifest ? createdAtUnix(r.manifest) : 0,
    })),
  );
}
