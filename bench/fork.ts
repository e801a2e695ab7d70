// `npm run bench -- fork`: cold boot vs fork of N = 1, 10, 50, 100 on the
// python-numpy snapshot; host memory per idle child (PSS); eval and exec
// latency. Targets are reported, never asserted: these machines are noisy.
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
    const result = await engine.fork({ tag: TAG, n });
    const ok = result.children.filter((c): c is Ok => c.ok);
    const perChild = result.wallMs / n;
    rows.push({
      metric: `fork n=${n} (cold restore), all answering`,
      value: result.wallMs,
      unit: 'ms',
      note: `${ok.length}/${n} ok; ${round(perChild, 1)} ms per child, ${round(coldMs / perChild, 1)}x faster per VM than a cold boot`,
    });
    await Promise.all(ok.map((c) => c.sandbox.kill()));
  }

  // The same 100, restored ahead of time into a warm pool (what the daemon keeps per snapshot).
  log('prewarm a pool of 100');
  let t = Date.now();
  await engine.prewarm(TAG, 100);
  rows.push({
    metric: 'pool of 100 restored ahead (refill cost, off the request path)',
    value: Date.now() - t,
    unit: 'ms',
  });
  await new Promise((r) => setTimeout(r, 1000)); // let the pool go idle
  t = Date.now();
  const pooled = await engine.fork({ tag: TAG, n: 100, prewarm: true });
  const wall = Date.now() - t;
  const ok = pooled.children.filter((c): c is Ok => c.ok);
  rows.push({
    metric: 'fork n=100 from the warm pool, all answering',
    value: wall,
    unit: 'ms',
    note: `${ok.length}/100 ok; ${round(coldMs / (wall / 100), 0)}x faster per VM than a cold boot`,
    target: '≤ 1000 ms and ≥ 50x cold',
    met: wall <= 1000 && ok.length === 100 && coldMs / (wall / 100) >= 50,
  });
  await engine.close(); // stop the refill: measure the 100 alone
  await new Promise((r) => setTimeout(r, 1000));
  const pss = await Promise.all(ok.map((c) => pssBytes(c.sandbox.pid)));
  const perChildMib = pss.reduce((a, b) => a + b, 0) / ok.length / 2 ** 20;
  rows.push({
    metric: 'host memory per idle child (PSS, 100 children)',
    value: round(perChildMib, 1),
    unit: 'MiB',
    target: '≤ 8 MiB',
    met: perChildMib <= 8,
  });
  const randoms = await Promise.all(ok.map((c) => c.sandbox.agent.eval('import os; os.urandom(16).hex()')));
  rows.push({
    metric: 'distinct /dev/urandom values across the 100',
    value: new Set(randoms.map((r) => r.result)).size,
    unit: `of ${ok.length}`,
  });
  await Promise.all(ok.map((c) => c.sandbox.kill()));

  // Latency in one child with no siblings competing for the two cores.
  const single = (await engine.fork({ tag: TAG, n: 1 })).children[0];
  if (!single?.ok) throw new Error('could not fork a child for the latency runs');
  await latency(single.sandbox, rows, log);
  await single.sandbox.kill();
  const table = await writeResults('fork', machineSummary(manifest.machine.accel), rows, { snapshot: TAG });
  log('\n' + table);
}

async function latency(sandbox: Sandbox, rows: BenchRow[], log: (s: string) => void): Promise<void> {
  log('eval and exec latency');
  const code = 'numpy.zeros(5).tolist()';
  let t = performance.now();
  await sandbox.agent.eval(code);
  rows.push({ metric: 'first eval in a child', value: round(performance.now() - t), unit: 'ms' });
  const pings: number[] = [];
  for (let i = 0; i < 100; i++) {
    t = performance.now();
    await sandbox.agent.ping();
    pings.push(performance.now() - t);
  }
  rows.push({ metric: 'agent ping p50 (transport floor)', value: round(percentile(pings, 50)), unit: 'ms' });
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
