// `npm run bench -- fork-k`: a time-travel fork of a running python-numpy
// sandbox that has touched 100 MiB, k = 5 with a variant each, timed to all
// five answering; against the same done by hand through the API (branch,
// then spawn 5 from the branch, then ask each) in the same run. The target
// compares the fork with the branch's own time inside it.
import { startDaemon } from '../src/daemon/server.js';
import type { Engine } from '../src/engine/index.js';
import { buildImage } from '../src/image/index.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';
const K = 5;
const ROUNDS = 5;

interface ForkAnswer {
  branch_ms: number;
  pause_ms: number;
  children: Array<{ id: string }>;
}

export async function benchForkK(engine: Engine, log: (s: string) => void): Promise<void> {
  const image = await buildImage(TAG, {
    dataDir: engine.dataDir.root,
    onProgress: (e) => log(`${e.step}: ${e.detail ?? ''}`),
  });
  const existing = (await engine.store.exists(TAG)) ? (await engine.store.getReady(TAG)).manifest : null;
  if (existing?.image.contentHash !== image.contentHash) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: TAG, replace: true, onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  const daemon = await startDaemon({ dataDir: engine.dataDir.root, port: 0, log });
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(daemon.url + path, {
      method,
      ...(body === undefined
        ? {}
        : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return (text ? JSON.parse(text) : null) as T;
  };
  const evalIn = (id: string, code: string) =>
    call<{ value: unknown }>('POST', `/v1/sandboxes/${id}/eval`, { code });
  const kill = (ids: string[]) => Promise.all(ids.map((id) => call('DELETE', `/v1/sandboxes/${id}`)));
  const rows: BenchRow[] = [];
  try {
    const [source] = await call<Array<{ id: string }>>('POST', '/v1/sandboxes', { snapshot_tag: TAG });
    const sourceId = source!.id;
    // 100 MiB the source wrote since its restore: what a branch has to copy.
    await evalIn(sourceId, 'blob = numpy.ones(100 * 2**20 // 8); int(blob.nbytes)');
    const forkMs: number[] = [];
    const branchInFork: number[] = [];
    const pauses: number[] = [];
    const handMs: number[] = [];
    const handBranch: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      log(`round ${r + 1}/${ROUNDS}: fork k=${K}`);
      let t = performance.now();
      const fork = await call<ForkAnswer>('POST', `/v1/sandboxes/${sourceId}/fork`, {
        k: K,
        vary: { SEED: Array.from({ length: K }, (_, i) => r * K + i) },
      });
      const seeds = await Promise.all(fork.children.map((c) => evalIn(c.id, 'SEED')));
      forkMs.push(performance.now() - t);
      branchInFork.push(fork.branch_ms);
      pauses.push(fork.pause_ms);
      if (seeds.some((s, i) => s.value !== r * K + i)) throw new Error('a child did not see its variant');
      await kill(fork.children.map((c) => c.id));

      log(`round ${r + 1}/${ROUNDS}: branch, then spawn ${K} by hand`);
      const tag = `bench-fork-k-${r}`;
      t = performance.now();
      await call('POST', `/v1/sandboxes/${sourceId}/branch`, { tag });
      handBranch.push(performance.now() - t);
      const spawned = await call<Array<{ id: string }>>('POST', '/v1/sandboxes', { snapshot_tag: tag, n: K });
      await Promise.all(spawned.map((c) => evalIn(c.id, '1')));
      handMs.push(performance.now() - t);
      await kill(spawned.map((c) => c.id));
      await call('DELETE', `/v1/snapshots/${tag}`);
    }
    await kill([sourceId]);
    const fork50 = percentile(forkMs, 50);
    const branch50 = percentile(branchInFork, 50);
    rows.push(
      {
        metric: `fork k=${K} with variants, to all ${K} answering, p50 of ${ROUNDS}`,
        value: round(fork50),
        unit: 'ms',
        note: `its branch ${round(branch50)} ms (source paused ${round(percentile(pauses, 50))} ms); spawn and answer ${round(fork50 - branch50)} ms`,
        target: '≤ branch + 150 ms',
        met: fork50 <= branch50 + 150,
      },
      {
        metric: `by hand: POST branch, POST sandboxes n=${K}, each answering, p50 of ${ROUNDS}`,
        value: round(percentile(handMs, 50)),
        unit: 'ms',
        note: `its branch ${round(percentile(handBranch, 50))} ms; fork is ${round(percentile(handMs, 50) / fork50, 2)}x faster`,
      },
    );
  } finally {
    await daemon.close();
  }
  const table = await writeResults('fork-k', machineSummary(manifest.machine.accel), rows, { snapshot: TAG });
  log('\n' + table);
}
