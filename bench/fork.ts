// `npm run bench -- fork`: cold boot vs fork of N = 1, 10, 50, 100 on the
// python-numpy snapshot; host memory per idle child (PSS); eval and exec
// latency. Targets are reported, never asserted: these machines are noisy.
import { availableParallelism } from 'node:os';
import { Engine, type ChildResult, type Sandbox } from '../src/engine/index.js';
import { machineSummary, percentile, pssBytes, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';

type Ok = Extract<ChildResult, { ok: true }>;

export async function benchFork(engine: Engine, log: (s: string) => void): Promise<void> {
  const rows: BenchRow[] = [];
  if (!(await engine.store.exists(TAG))) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);

  // Cold boot of the same image to agent-ready (runtime imported): a throwaway snapshot's boot phase.
  log('cold boot baseline');
  const coldTag = 'bench-cold-boot';
  await engine.store.remove(coldTag).catch(() => undefined);
  const cold = await engine.createSnapshot({
    tag: coldTag,
    recipe: manifest.image.recipe,
    memoryMib: manifest.machine.memoryMib,
  });
  await engine.store.remove(coldTag);
  const coldMs = cold.timings.bootToReadyMs;
  rows.push({ metric: 'cold boot to agent + numpy ready', value: coldMs, unit: 'ms' });

  for (const n of [1, 10, 50, 100]) {
    log(`fork n=${n}`);
    const result = await engine.fork({ tag: TAG, n, concurrency: availableParallelism() * 4 });
    const ok = result.children.filter((c): c is Ok => c.ok);
    rows.push({
      metric: `fork n=${n}, all answering`,
      value: result.wallMs,
      unit: 'ms',
      note: `${ok.length}/${n} ok, ${round(coldMs / result.wallMs, 1)}x vs cold boot`,
      ...(n === 100
        ? { target: '≤ 1000 ms and ≥ 50x cold', met: result.wallMs <= 1000 && coldMs / result.wallMs >= 50 }
        : {}),
    });
    if (n === 100) {
      await new Promise((r) => setTimeout(r, 1000)); // let the children go idle
      const pss = await Promise.all(ok.map((c) => pssBytes(c.sandbox.pid)));
      const perChild = pss.reduce((a, b) => a + b, 0) / ok.length / 2 ** 20;
      rows.push({
        metric: 'host memory per idle child (PSS)',
        value: round(perChild, 1),
        unit: 'MiB',
        target: '≤ 8 MiB',
        met: perChild <= 8,
      });
      await latency(ok[0]!.sandbox, rows, log);
    }
    await Promise.all(ok.map((c) => c.sandbox.kill()));
  }
  const table = await writeResults('fork', machineSummary(manifest.machine.accel), rows, { snapshot: TAG });
  log('\n' + table);
}

async function latency(sandbox: Sandbox, rows: BenchRow[], log: (s: string) => void): Promise<void> {
  log('eval and exec latency');
  const code = 'numpy.zeros(5).tolist()';
  let t = performance.now();
  await sandbox.agent.eval(code);
  rows.push({ metric: 'first eval in a child', value: round(performance.now() - t), unit: 'ms' });
  const evals: number[] = [];
  for (let i = 0; i < 100; i++) {
    t = performance.now();
    await sandbox.agent.eval(code);
    evals.push(performance.now() - t);
  }
  const p50 = percentile(evals, 50);
  rows.push({ metric: 'warm eval p50', value: round(p50), unit: 'ms', target: '≤ 1 ms', met: p50 <= 1 });
  rows.push({ metric: 'warm eval p90', value: round(percentile(evals, 90)), unit: 'ms' });
  const execs: number[] = [];
  for (let i = 0; i < 20; i++) {
    t = performance.now();
    await sandbox.agent.exec({ args: ['true'] });
    execs.push(performance.now() - t);
  }
  rows.push({ metric: 'exec `true` p50', value: round(percentile(execs, 50)), unit: 'ms' });
  rows.push({ metric: 'exec `true` p90', value: round(percentile(execs, 90)), unit: 'ms' });
}
