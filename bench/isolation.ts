// `npm run bench -- isolation`: what confinement costs. Cold forks of n = 1,
// 10, 100 from the python-numpy snapshot and each child's first eval, with
// QEMU unconfined (the baseline, FORKD_UNCONFINED=1) and confined under each
// egress policy, measured in the same run with the configurations
// interleaved round by round so host drift hits them all alike.
import { Engine, parseEgress, type ChildResult, type EgressPolicy } from '../src/engine/index.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';

interface Config {
  name: string;
  confined: boolean;
  egress: EgressPolicy;
}

const CONFIGS: Config[] = [
  { name: 'unconfined', confined: false, egress: parseEgress('none') },
  { name: 'confined, egress none', confined: true, egress: parseEgress('none') },
  { name: 'confined, egress internet', confined: true, egress: parseEgress('internet') },
  { name: 'confined, egress allow-list', confined: true, egress: parseEgress('allow:203.0.113.0/24') },
];

type Ok = Extract<ChildResult, { ok: true }>;

async function measure(
  engine: Engine,
  config: Config,
  n: number,
): Promise<{ wallMs: number; evalMs: number[] }> {
  const before = process.env.FORKD_UNCONFINED;
  if (config.confined) delete process.env.FORKD_UNCONFINED;
  else process.env.FORKD_UNCONFINED = '1';
  try {
    const result = await engine.fork({ tag: TAG, n, egress: config.egress });
    const ok = result.children.filter((c): c is Ok => c.ok);
    if (ok.length !== n) throw new Error(`${config.name}: ${n - ok.length} of ${n} children failed`);
    const evalMs = await Promise.all(
      ok.map(async (c) => {
        const t = performance.now();
        await c.sandbox.agent.eval('numpy.zeros(5).tolist()');
        return performance.now() - t;
      }),
    );
    await Promise.all(ok.map((c) => c.sandbox.kill()));
    return { wallMs: result.wallMs, evalMs };
  } finally {
    if (before === undefined) delete process.env.FORKD_UNCONFINED;
    else process.env.FORKD_UNCONFINED = before;
  }
}

export async function benchIsolation(engine: Engine, log: (s: string) => void): Promise<void> {
  if (!(await engine.store.exists(TAG))) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  const rows: BenchRow[] = [];
  for (const n of [1, 10, 100]) {
    const rounds = n === 100 ? 2 : 5;
    const walls = new Map<string, number[]>(CONFIGS.map((c) => [c.name, []]));
    const evals = new Map<string, number[]>(CONFIGS.map((c) => [c.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const config of CONFIGS) {
        log(`n=${n} round ${r + 1}/${rounds}: ${config.name}`);
        const m = await measure(engine, config, n);
        walls.get(config.name)!.push(m.wallMs);
        evals.get(config.name)!.push(...m.evalMs);
      }
    }
    const base = percentile(walls.get('unconfined')!, 50);
    for (const config of CONFIGS) {
      const wall = percentile(walls.get(config.name)!, 50);
      const ratio = wall / base;
      const target = config.name === 'unconfined' ? undefined : config.egress.mode === 'allow' ? 1.15 : 1.05;
      rows.push({
        metric: `fork n=${n}, ${config.name}, all answering (median of ${rounds})`,
        value: round(wall, 0),
        unit: 'ms',
        note: `${round(ratio, 3)}x unconfined; first eval p50 ${round(percentile(evals.get(config.name)!, 50), 1)} ms`,
        ...(target !== undefined ? { target: `≤ ${target}x unconfined`, met: ratio <= target } : {}),
      });
    }
  }
  const table = await writeResults('isolation', machineSummary(manifest.machine.accel), rows);
  log(`\n${table}`);
}
