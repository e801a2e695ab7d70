// `npm run bench -- api`: the daemon over loopback HTTP. Spawn round trip for
// n=1 (cold restore and from a warm pool) and n=100, exec and eval round
// trips, on the python-numpy snapshot.
import { startDaemon } from '../src/daemon/server.js';
import type { Engine } from '../src/engine/index.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw new Error(`${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

export async function benchApi(engine: Engine, log: (s: string) => void): Promise<void> {
  if (!(await engine.store.exists(TAG)))
    await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', onProgress: log });
  const { manifest } = await engine.store.getReady(TAG);
  const daemon = await startDaemon({ dataDir: engine.dataDir.root, port: 0, prewarm: { [TAG]: 20 }, log });
  const rows: BenchRow[] = [];
  const post = (path: string, body: unknown) =>
    fetch(daemon.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const del = (id: string) => fetch(`${daemon.url}/v1/sandboxes/${id}`, { method: 'DELETE' });
  try {
    for (const prewarm of [false, true]) {
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t = performance.now();
        const [sb] = await json<{ id: string }[]>(
          await post('/v1/sandboxes', { snapshot_tag: TAG, n: 1, prewarm }),
        );
        times.push(performance.now() - t);
        await del(sb!.id);
        if (prewarm) await new Promise((r) => setTimeout(r, 300)); // let the pool refill its slot
      }
      const p50 = percentile(times, 50);
      rows.push({
        metric: `POST /v1/sandboxes n=1${prewarm ? ' (prewarm: true, warm pool)' : ' (cold restore)'} p50`,
        value: round(p50, 1),
        unit: 'ms',
        note: `p90 ${round(percentile(times, 90), 1)} ms`,
        target: '≤ 60 ms',
        met: p50 <= 60,
      });
    }
    log('n=100');
    let t = performance.now();
    const hundred = await json<{ id: string }[]>(await post('/v1/sandboxes', { snapshot_tag: TAG, n: 100 }));
    rows.push({
      metric: 'POST /v1/sandboxes n=100 (cold restore)',
      value: round(performance.now() - t, 0),
      unit: 'ms',
    });
    await Promise.all(hundred.map((s) => del(s.id)));
    const [sb] = await json<{ id: string }[]>(await post('/v1/sandboxes', { snapshot_tag: TAG, n: 1 }));
    const id = sb!.id;
    for (const [name, path, body] of [
      ['exec `true` round trip', 'exec', { args: ['true'] }],
      ['eval round trip', 'eval', { code: 'numpy.zeros(5).tolist()' }],
    ] as const) {
      const times: number[] = [];
      for (let i = 0; i < 50; i++) {
        t = performance.now();
        await json(await post(`/v1/sandboxes/${id}/${path}`, body));
        times.push(performance.now() - t);
      }
      rows.push({
        metric: `${name} p50`,
        value: round(percentile(times.slice(5), 50)),
        unit: 'ms',
        note: `p90 ${round(percentile(times.slice(5), 90))} ms`,
      });
    }
    await del(id);
  } finally {
    await daemon.close();
    await engine.close();
  }
  log('\n' + (await writeResults('api', machineSummary(manifest.machine.accel), rows, { snapshot: TAG })));
}
