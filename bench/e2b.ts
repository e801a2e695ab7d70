// `npm run bench -- e2b`: what the E2B layer costs on top of forkd's own
// API, both driven by their official SDKs against one daemon (token file, so
// the API-key path runs) on the tiny snapshot. Spawn → run → kill, the two
// interleaved round by round so machine noise hits both; then fork 10 ways
// from a running source, each fork reading a file the source wrote. The
// daemon's restore, kill and agent calls are timed from inside (wrapped for
// this run only), which says where the E2B layer's extra time goes.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Sandbox as E2bSandbox } from 'e2b';
import { startDaemon, type RunningDaemon } from '../src/daemon/server.js';
import type { Engine, Sandbox as EngineSandbox } from '../src/engine/index.js';
import { buildImage, getRecipe, type Recipe } from '../src/image/index.js';
import { Sandbox as ForkdSandbox } from '../src/sdk/index.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'bench-e2b';
/**
 * The tiny guest made an E2B template: E2B's templates have the user's home,
 * so the layer's create makes none (a template without it pays one agent
 * mkdir per create, which the README reports).
 */
const RECIPE: Recipe = {
  ...getRecipe('tiny'),
  name: 'tiny-e2b',
  warmup: { steps: ['mkdir -p /home/user'], ready: null, timeoutMs: 60_000 },
};
const TOKEN = 'bench-e2b-token-0123456789abcdef0123';
/** Spawn → run → kill rounds per SDK, after one warm-up round each. */
const ROUNDS = 15;
const FORK_COUNT = 10;
const FORK_ROUNDS = 5;
const TARGET_MS = 5;
const STATE_FILE = '/home/user/state.txt';
const STEPS = ['create', 'run', 'kill', 'total'] as const;
type Step = (typeof STEPS)[number];
/** Daemon-side spans: the restore, the kill, and the agent calls E2B's layer adds. */
const SPANS = ['restore', 'vmKill', 'mkdir', 'stat'] as const;
type Span = (typeof SPANS)[number];

/** Records how long the daemon spends in a few of its own calls, per client step. */
class Spans {
  private current = new Map<Span, number>();

  /** Wraps the daemon's restore, kill and agent calls; the wrappers only add timings. */
  install(daemon: RunningDaemon): void {
    const { engine, registry } = daemon.context;
    const fork = engine.fork.bind(engine);
    engine.fork = (opts) => this.time('restore', () => fork(opts));
    const kill = registry.kill.bind(registry);
    registry.kill = (id) => this.time('vmKill', () => kill(id));
    const add = registry.add.bind(registry);
    registry.add = (sandbox: EngineSandbox) => {
      const agent = sandbox.agent;
      const mkdir = agent.mkdir.bind(agent);
      agent.mkdir = (...args) => this.time('mkdir', () => mkdir(...args));
      const stat = agent.stat.bind(agent);
      agent.stat = (...args) => this.time('stat', () => stat(...args));
      add(sandbox);
    };
  }

  private async time<T>(span: Span, fn: () => Promise<T>): Promise<T> {
    const t = performance.now();
    try {
      return await fn();
    } finally {
      this.current.set(span, (this.current.get(span) ?? 0) + performance.now() - t);
    }
  }

  /** Times one client step; the spans the daemon ran during it come back with it. */
  async step(fn: () => Promise<unknown>): Promise<{ ms: number; spans: Map<Span, number> }> {
    this.current = new Map();
    const t = performance.now();
    await fn();
    return { ms: performance.now() - t, spans: this.current };
  }
}

interface Series {
  ms: Record<Step, number[]>;
  /** Per step, per span: the daemon's time in it each round (0 when the step did not reach it). */
  spans: Record<Step, Record<Span, number[]>>;
  /** Per step: the client's time less the spans (HTTP, routing, the layer's own work, the SDK). */
  rest: Record<Step, number[]>;
}

function series(): Series {
  const steps = <T>(make: () => T): Record<Step, T> => ({
    create: make(),
    run: make(),
    kill: make(),
    total: make(),
  });
  return {
    ms: steps(() => []),
    spans: steps(() => ({ restore: [], vmKill: [], mkdir: [], stat: [] })),
    rest: steps(() => []),
  };
}

function record(s: Series, step: Step, r: { ms: number; spans: Map<Span, number> }): void {
  s.ms[step].push(r.ms);
  let inside = 0;
  for (const span of SPANS) {
    const ms = r.spans.get(span) ?? 0;
    s.spans[step][span].push(ms);
    inside += ms;
  }
  s.rest[step].push(r.ms - inside);
}

const p50 = (xs: number[]) => percentile(xs, 50);
const fmt = (ms: number) => round(ms, 1).toFixed(1);

export async function benchE2b(engine: Engine, log: (s: string) => void): Promise<void> {
  const image = await buildImage(RECIPE, {
    dataDir: engine.dataDir.root,
    onProgress: (e) => log(`${e.step}: ${e.detail ?? ''}`),
  });
  const existing = (await engine.store.exists(TAG)) ? (await engine.store.getReady(TAG)).manifest : null;
  if (existing?.image.contentHash !== image.contentHash) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: RECIPE, replace: true, memoryMib: 256, onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  const scratch = await mkdtemp(join(tmpdir(), 'forkd-bench-e2b-'));
  const tokenFile = join(scratch, 'token');
  await writeFile(tokenFile, TOKEN);
  const daemon = await startDaemon({
    dataDir: engine.dataDir.root,
    port: 0,
    tokenFile,
    auditLog: join(scratch, 'audit.jsonl'),
    stateDb: join(scratch, 'forkd.db'),
  });
  const spans = new Spans();
  spans.install(daemon);
  const e2bOpts = {
    apiKey: TOKEN,
    apiUrl: `${daemon.url}/e2b`,
    sandboxUrl: `${daemon.url}/e2b-sandbox`,
    requestTimeoutMs: 120_000,
  };
  const forkdOpts = { url: daemon.url, token: TOKEN, timeoutMs: 120_000 };
  const e2b = series();
  const forkd = series();
  const e2bRunAgain: number[] = [];
  const forkdRunAgain: number[] = [];

  const e2bRound = async (keep: boolean): Promise<void> => {
    let sbx: E2bSandbox | undefined;
    const create = await spans.step(async () => (sbx = await E2bSandbox.create(TAG, e2bOpts)));
    const run = await spans.step(() => sbx!.commands.run('echo hi'));
    const again = await spans.step(() => sbx!.commands.run('echo hi'));
    const kill = await spans.step(() => sbx!.kill());
    if (keep) keepRound(e2b, create, run, kill, e2bRunAgain, again.ms);
  };
  const forkdRound = async (keep: boolean): Promise<void> => {
    let sbx: ForkdSandbox | undefined;
    const create = await spans.step(
      async () => (sbx = await ForkdSandbox.create({ ...forkdOpts, snapshotTag: TAG })),
    );
    const run = await spans.step(() => sbx!.commands.run('echo hi'));
    const again = await spans.step(() => sbx!.commands.run('echo hi'));
    const kill = await spans.step(() => sbx!.kill());
    if (keep) keepRound(forkd, create, run, kill, forkdRunAgain, again.ms);
  };

  const rows: BenchRow[] = [];
  let forkTable = '';
  let forkRaw: Record<string, number[]> = {};
  try {
    // Round 0 warms both paths (page cache, JIT, connections) and is not kept.
    for (let r = 0; r <= ROUNDS; r++) {
      log(`spawn → run → kill round ${r}/${ROUNDS}${r === 0 ? ' (warm-up)' : ''}`);
      const order = r % 2 === 0 ? [e2bRound, forkdRound] : [forkdRound, e2bRound];
      for (const round of order) await round(r > 0);
    }

    log(`fork ${FORK_COUNT} ways, ${FORK_ROUNDS} rounds each`);
    const fork = await benchForks(daemon, e2bOpts, forkdOpts, log);
    forkTable = fork.table;
    forkRaw = fork.raw;

    for (const step of STEPS) {
      const over = p50(e2b.ms[step]) - p50(forkd.ms[step]);
      rows.push({
        metric: `${step}: E2B SDK p50 (p95) vs forkd SDK p50 (p95), ${ROUNDS} rounds`,
        value: round(over, 1),
        unit: 'ms E2B overhead',
        note: `E2B ${fmt(p50(e2b.ms[step]))} (${fmt(percentile(e2b.ms[step], 95))}) ms, forkd ${fmt(p50(forkd.ms[step]))} (${fmt(percentile(forkd.ms[step], 95))}) ms, ratio ${round(p50(e2b.ms[step]) / p50(forkd.ms[step]), 2)}`,
        ...(step === 'total' ? {} : { target: `≤ ${TARGET_MS} ms`, met: over <= TARGET_MS }),
      });
    }
    const againOver = p50(e2bRunAgain) - p50(forkdRunAgain);
    rows.push({
      metric: 'run again in the same sandbox: E2B p50 vs forkd p50',
      value: round(againOver, 1),
      unit: 'ms E2B overhead',
      note: `E2B ${fmt(p50(e2bRunAgain))} ms, forkd ${fmt(p50(forkdRunAgain))} ms`,
      target: `≤ ${TARGET_MS} ms`,
      met: againOver <= TARGET_MS,
    });
    rows.push(...fork.rows);
  } finally {
    await daemon.close();
    await rm(scratch, { recursive: true, force: true });
  }

  const machine = machineSummary(manifest.machine.accel);
  const table = await writeResults('e2b', machine, rows, {
    snapshot: TAG,
    recipe: RECIPE.name,
    rounds: ROUNDS,
    forkRounds: FORK_ROUNDS,
    forkCount: FORK_COUNT,
    raw: { e2b: e2b.ms, forkd: forkd.ms, e2bRunAgain, forkdRunAgain, fork: forkRaw },
  });
  log('\n' + table + '\n\n' + stepTable(e2b, forkd) + '\n\n' + forkTable + '\n\n' + spanTable(e2b, forkd));
}

function keepRound(
  s: Series,
  create: { ms: number; spans: Map<Span, number> },
  run: { ms: number; spans: Map<Span, number> },
  kill: { ms: number; spans: Map<Span, number> },
  again: number[],
  againMs: number,
): void {
  record(s, 'create', create);
  record(s, 'run', run);
  record(s, 'kill', kill);
  s.ms.total.push(create.ms + run.ms + kill.ms);
  again.push(againMs);
}

/** Fork a running source 10 ways through each SDK; each fork reads the source's file. */
async function benchForks(
  daemon: RunningDaemon,
  e2bOpts: { apiKey: string; apiUrl: string; sandboxUrl: string; requestTimeoutMs: number },
  forkdOpts: { url: string; token: string; timeoutMs: number },
  log: (s: string) => void,
): Promise<{ rows: BenchRow[]; table: string; raw: Record<string, number[]> }> {
  const e2bSource = await E2bSandbox.create(TAG, e2bOpts);
  const forkdSource = await ForkdSandbox.create({ ...forkdOpts, snapshotTag: TAG });
  const e2bCall: number[] = [];
  const e2bAll: number[] = [];
  const forkdCall: number[] = [];
  const forkdAll: number[] = [];
  try {
    await e2bSource.commands.run(`echo e2b-source > ${STATE_FILE}`);
    await forkdSource.commands.run(`mkdir -p /home/user && echo forkd-source > ${STATE_FILE}`);
    for (let r = 0; r < FORK_ROUNDS; r++) {
      const sides = [
        async () => {
          log(`fork round ${r + 1}/${FORK_ROUNDS}: E2B SDK`);
          const t = performance.now();
          const forks = await e2bSource.fork({ count: FORK_COUNT, requestTimeoutMs: 300_000 });
          e2bCall.push(performance.now() - t);
          const ok = forks.filter((f): f is E2bSandbox => f instanceof E2bSandbox);
          try {
            const failed = forks.find((f) => f instanceof Error);
            if (failed) throw failed;
            const seen = await Promise.all(ok.map((f) => f.commands.run(`cat ${STATE_FILE}`)));
            e2bAll.push(performance.now() - t);
            if (seen.some((s) => s.stdout !== 'e2b-source\n'))
              throw new Error('an E2B fork lost the source state');
          } finally {
            await Promise.all(ok.map((f) => f.kill()));
          }
        },
        async () => {
          log(`fork round ${r + 1}/${FORK_ROUNDS}: forkd SDK`);
          const t = performance.now();
          const children = await forkdSource.fork({ k: FORK_COUNT }, { timeoutMs: 300_000 });
          forkdCall.push(performance.now() - t);
          try {
            const seen = await Promise.all(children.map((c) => c.commands.run(`cat ${STATE_FILE}`)));
            forkdAll.push(performance.now() - t);
            if (seen.some((s) => s.stdout !== 'forkd-source\n'))
              throw new Error('a forkd child lost the source state');
          } finally {
            await Promise.all(children.map((c) => c.kill()));
          }
        },
      ];
      for (const side of r % 2 === 0 ? sides : sides.reverse()) await side();
    }
  } finally {
    await Promise.all([e2bSource.kill(), forkdSource.kill()]);
  }
  const rows: BenchRow[] = [
    {
      metric: `fork ${FORK_COUNT} of a running sandbox, each forked child answering: E2B p50 vs forkd p50, ${FORK_ROUNDS} rounds`,
      value: round(p50(e2bAll) - p50(forkdAll), 1),
      unit: 'ms E2B overhead',
      note: `E2B ${fmt(p50(e2bAll))} ms, forkd ${fmt(p50(forkdAll))} ms, ratio ${round(p50(e2bAll) / p50(forkdAll), 2)}`,
      target: `≤ ${TARGET_MS} ms`,
      met: p50(e2bAll) - p50(forkdAll) <= TARGET_MS,
    },
    {
      metric: `the fork call alone: E2B p50 vs forkd p50`,
      value: round(p50(e2bCall) - p50(forkdCall), 1),
      unit: 'ms E2B overhead',
      // forkd's fork hands each child a variant ({} here: a mkdir and a vary.json write per child)
      // and removes its fork point inside the call; E2B's does neither.
      note: `E2B ${fmt(p50(e2bCall))} ms, forkd ${fmt(p50(forkdCall))} ms; forkd's also hands each child a variant and removes the fork point`,
    },
  ];
  const table = [
    `| fork ${FORK_COUNT} (p50 of ${FORK_ROUNDS}) | E2B SDK | forkd SDK | E2B − forkd | ratio |`,
    '| --- | --- | --- | --- | --- |',
    `| fork call | ${fmt(p50(e2bCall))} ms | ${fmt(p50(forkdCall))} ms | ${fmt(p50(e2bCall) - p50(forkdCall))} ms | ${round(p50(e2bCall) / p50(forkdCall), 2)} |`,
    `| fork + all ${FORK_COUNT} ran \`cat\` | ${fmt(p50(e2bAll))} ms | ${fmt(p50(forkdAll))} ms | ${fmt(p50(e2bAll) - p50(forkdAll))} ms | ${round(p50(e2bAll) / p50(forkdAll), 2)} |`,
  ].join('\n');
  return { rows, table, raw: { e2bCall, e2bAll, forkdCall, forkdAll } };
}

function stepTable(e2b: Series, forkd: Series): string {
  return [
    `| step (${ROUNDS} rounds) | E2B p50 | E2B p95 | forkd p50 | forkd p95 | E2B − forkd p50 | ratio | ≤ ${TARGET_MS} ms |`,
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
    ...STEPS.map((step) => {
      const [a, b] = [e2b.ms[step], forkd.ms[step]];
      const over = p50(a) - p50(b);
      const met = step === 'total' ? '' : over <= TARGET_MS ? 'yes' : 'no';
      return `| ${step} | ${fmt(p50(a))} | ${fmt(percentile(a, 95))} | ${fmt(p50(b))} | ${fmt(percentile(b, 95))} | ${fmt(over)} | ${round(p50(a) / p50(b), 2)} | ${met} |`;
    }),
  ].join('\n');
}

/** Per step: the daemon's restore / kill / agent time and what is left (HTTP, routing, SDK). */
function spanTable(e2b: Series, forkd: Series): string {
  const lines = [
    '| step, p50 ms | side | client saw | restore | VM kill | agent mkdir | agent stat | rest (HTTP, layer, SDK) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const step of ['create', 'run', 'kill'] as const) {
    for (const [side, s] of [
      ['E2B', e2b],
      ['forkd', forkd],
    ] as const) {
      const cells = SPANS.map((span) => fmt(p50(s.spans[step][span])));
      lines.push(
        `| ${step} | ${side} | ${fmt(p50(s.ms[step]))} | ${cells.join(' | ')} | ${fmt(p50(s.rest[step]))} |`,
      );
    }
  }
  return lines.join('\n');
}
