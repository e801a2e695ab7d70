// The best-of-k demo: a python-numpy sandbox gets a small project with four
// seeded bugs and a slow setup (a cache its tests read), then for each seed
// forks 5 ways at the agent's decision point, each branch with its own
// temperature and seed, runs the scripted agent (guest/agent.py) as the
// score step, and keeps the best branch. It prints the table: best of 5
// against one branch at temperature 1.0, and the wall time of a fork with
// its 5 agent runs against redoing the setup in 5 fresh sandboxes.
//
//   npm run demo:best-of-k [-- --seeds 20] [-- --url http://daemon]
//
// Without --url (or FORKD_URL) it starts a daemon of its own on a free
// loopback port over the default data dir.
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startDaemon, type RunningDaemon } from '../../src/daemon/server.js';
import { Controller, Sandbox } from '../../src/sdk/index.js';

const SNAPSHOT = 'python-numpy';
const TEMPERATURES = [0.25, 0.5, 1.0, 1.5, 2.5];
/** The one branch a single run would have been: the agent at its default temperature. */
const SINGLE = TEMPERATURES.indexOf(1.0);
const GUEST_DIR = fileURLToPath(new URL('../../../examples/best-of-k/guest/', import.meta.url));

export interface SeedResult {
  seed: number;
  single: number | null;
  best: number | null;
  bestTemperature: number | null;
  wallMs: number;
}

export interface DemoReport {
  setupMs: number;
  setupFiveMs: number;
  seeds: SeedResult[];
  table: string;
}

async function guestFiles(dir = GUEST_DIR): Promise<Array<{ path: string; data: Buffer }>> {
  const out: Array<{ path: string; data: Buffer }> = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await guestFiles(full)));
    else out.push({ path: `/work/${relative(GUEST_DIR, full)}`, data: await readFile(full) });
  }
  return out;
}

/** A sandbox with the project uploaded and its setup done; the setup's wall time. */
async function preparedSandbox(
  url: string,
  snapshot: string,
): Promise<{ sandbox: Sandbox; setupMs: number }> {
  const sandbox = await Sandbox.create({ url, snapshotTag: snapshot });
  for (const f of await guestFiles()) await sandbox.files.write(f.path, f.data);
  const started = performance.now();
  // A failing setup throws (CommandExitError, with its stderr).
  await sandbox.commands.run('python3 /work/setup.py', { timeoutMs: 600_000 });
  return { sandbox, setupMs: performance.now() - started };
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / Math.max(xs.length, 1);
const fmt = (n: number | null): string => (n === null ? '–' : String(n));

export interface DemoOptions {
  url: string;
  seeds: number;
  log: (s: string) => void;
  /** The python-numpy snapshot to start from (default `python-numpy`, created when missing). */
  snapshot?: string;
  /** Fresh sandboxes the setup is redone in, for the comparison (default 5). */
  redo?: number;
}

export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const { url, log } = opts;
  const snapshot = opts.snapshot ?? SNAPSHOT;
  const redo = opts.redo ?? 5;
  const controller = new Controller({ url });
  if (!(await controller.listSnapshots()).some((s) => s.tag === snapshot && s.status === 'ready')) {
    log(`creating the ${snapshot} snapshot (minutes, once)`);
    await controller.createSnapshot({ tag: snapshot, image: SNAPSHOT }, { timeoutMs: 30 * 60_000 });
  }
  log('preparing the parent: project, slow setup');
  const { sandbox: parent, setupMs } = await preparedSandbox(url, snapshot);
  try {
    log(`setup took ${Math.round(setupMs)} ms; now the same in ${redo} fresh sandboxes at once`);
    const started = performance.now();
    const five = await Promise.all(Array.from({ length: redo }, () => preparedSandbox(url, snapshot)));
    const setupFiveMs = performance.now() - started;
    await Promise.all(five.map((f) => f.sandbox.kill()));

    const seeds: SeedResult[] = [];
    for (let seed = 1; seed <= opts.seeds; seed++) {
      const t = performance.now();
      const ranked = await parent.bestOf({
        k: TEMPERATURES.length,
        vary: { temperature: TEMPERATURES, SEED: TEMPERATURES.map((_, i) => seed * 100 + i) },
        score: { exec: ['python3', '/work/agent.py'], timeoutSecs: 600 },
      });
      const wallMs = performance.now() - t;
      const single = ranked.find((c) => c.variant.temperature === TEMPERATURES[SINGLE]);
      const best = ranked[0];
      seeds.push({
        seed,
        single: single?.score ?? null,
        best: best?.score ?? null,
        bestTemperature: (best?.variant.temperature as number | undefined) ?? null,
        wallMs,
      });
      log(
        `seed ${seed}: best ${fmt(best?.score ?? null)} (temperature ${String(best?.variant.temperature)}), single ${fmt(single?.score ?? null)}, ${Math.round(wallMs)} ms`,
      );
      await best?.kill();
    }
    const scored = seeds.filter(
      (s): s is SeedResult & { single: number; best: number } => s.single !== null && s.best !== null,
    );
    const lines = [
      '| seed | single branch (T = 1.0) | best of 5 | best T | fork + 5 agent runs |',
      '| --- | --- | --- | --- | --- |',
      ...seeds.map(
        (s) =>
          `| ${s.seed} | ${fmt(s.single)} | ${fmt(s.best)} | ${fmt(s.bestTemperature)} | ${Math.round(s.wallMs)} ms |`,
      ),
      '',
      `Score = tests passed (of 12) minus edits made; the best possible is 8.`,
      `Mean over ${scored.length} seeds: single branch ${mean(scored.map((s) => s.single)).toFixed(2)}, best of 5 ${mean(scored.map((s) => s.best)).toFixed(2)}; best of 5 beat the single branch in ${scored.filter((s) => s.best > s.single).length} of ${scored.length}.`,
      `Wall time: fork + 5 agent runs ${Math.round(mean(seeds.map((s) => s.wallMs)))} ms per seed (mean); the setup alone took ${Math.round(setupMs)} ms in one sandbox and ${Math.round(setupFiveMs)} ms redone in ${redo} fresh sandboxes at once.`,
    ];
    return { setupMs, setupFiveMs, seeds, table: lines.join('\n') };
  } finally {
    await parent.kill();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { seeds: { type: 'string', default: '20' }, url: { type: 'string' } },
  });
  const seeds = Number(values.seeds);
  if (!Number.isInteger(seeds) || seeds < 1 || seeds > 1000) {
    throw new Error(`--seeds must be an integer from 1 to 1000, got ${values.seeds}`);
  }
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  let daemon: RunningDaemon | null = null;
  let url = values.url ?? process.env.FORKD_URL;
  if (!url) {
    daemon = await startDaemon({ port: 0 });
    url = daemon.url;
    log(`started a daemon at ${url}`);
  }
  try {
    const report = await runDemo({ url, seeds, log });
    process.stdout.write(report.table + '\n');
  } finally {
    await daemon?.close();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => {
    process.stderr.write(`best-of-k: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
