// `npm run bench -- load`: 20 concurrent clients loop spawn → exec → kill
// against a daemon on loopback for a bounded time (FORKD_LOAD_SECS, default
// 120), then check that nothing leaked: no QEMU, no run dir, no socket, no
// database row left "running".
import { readdir } from 'node:fs/promises';
import { startDaemon } from '../src/daemon/server.js';
import type { Engine } from '../src/engine/index.js';
import { machineSummary, percentile, qemuPidsUsing, round, writeResults, type BenchRow } from './support.js';

const TAG = 'bench-load-tiny';
const CLIENTS = 20;

export async function benchLoad(engine: Engine, log: (s: string) => void): Promise<void> {
  const seconds = Number(process.env.FORKD_LOAD_SECS ?? 120);
  await engine.createSnapshot({ tag: TAG, recipe: 'tiny', memoryMib: 256, replace: true });
  const { manifest } = await engine.store.getReady(TAG);
  const daemon = await startDaemon({ dataDir: engine.dataDir.root, port: 0 });
  const url = daemon.url;
  const lat = { spawn: [] as number[], exec: [] as number[], kill: [] as number[] };
  const errors: string[] = [];
  const deadline = Date.now() + seconds * 1000;
  const client = async () => {
    while (Date.now() < deadline) {
      try {
        let t = performance.now();
        const res = await fetch(`${url}/v1/sandboxes`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ snapshot_tag: TAG }),
        });
        if (res.status !== 201) throw new Error(`spawn ${res.status} ${await res.text()}`);
        const [sb] = (await res.json()) as { id: string }[];
        lat.spawn.push(performance.now() - t);
        t = performance.now();
        const ex = await fetch(`${url}/v1/sandboxes/${sb!.id}/exec`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ args: ['echo', sb!.id] }),
        });
        const out = (await ex.json()) as { stdout?: string };
        if (ex.status !== 200 || out.stdout !== `${sb!.id}\n`)
          throw new Error(`exec ${ex.status} ${JSON.stringify(out)}`);
        lat.exec.push(performance.now() - t);
        t = performance.now();
        const del = await fetch(`${url}/v1/sandboxes/${sb!.id}`, { method: 'DELETE' });
        if (del.status !== 204) throw new Error(`kill ${del.status}`);
        lat.kill.push(performance.now() - t);
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  log(`${CLIENTS} clients for ${seconds} s`);
  await Promise.all(Array.from({ length: CLIENTS }, client));
  const runningRows = daemon.context.db.sandboxes('running').length;
  await daemon.close();
  await new Promise((r) => setTimeout(r, 500));
  const runDirs = await readdir(engine.dataDir.runDir).catch(() => []);
  const qemus = qemuPidsUsing(engine.dataDir.runDir);
  await engine.store.remove(TAG);
  const rows: BenchRow[] = [
    { metric: 'iterations (spawn → exec → kill)', value: lat.kill.length, unit: `in ${seconds} s` },
    {
      metric: 'errors',
      value: errors.length,
      unit: '',
      target: '0',
      met: errors.length === 0,
      ...(errors[0] ? { note: errors[0].slice(0, 120) } : {}),
    },
    ...(['spawn', 'exec', 'kill'] as const).flatMap((k) => [
      { metric: `${k} p50`, value: round(percentile(lat[k], 50), 1), unit: 'ms' },
      { metric: `${k} p99`, value: round(percentile(lat[k], 99), 1), unit: 'ms' },
    ]),
    { metric: 'leaked QEMU processes', value: qemus.length, unit: '', target: '0', met: qemus.length === 0 },
    {
      metric: 'leaked run dirs (sockets, overlays, logs)',
      value: runDirs.length,
      unit: '',
      target: '0',
      met: runDirs.length === 0,
    },
    {
      metric: 'database rows left "running"',
      value: runningRows,
      unit: '',
      target: '0',
      met: runningRows === 0,
    },
  ];
  log(
    '\n' +
      (await writeResults('load', machineSummary(manifest.machine.accel), rows, {
        clients: CLIENTS,
        seconds,
      })),
  );
}
