// `npm run bench -- hub`: the python-numpy snapshot through the hub. Pack it
// (level 9, the default, and level 19), publish it on a loopback hub, pull it
// into fresh data dirs, then compare the first forks from the pulled copy with
// forks from the locally built snapshot. Targets are reported, never asserted.
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Engine, type ChildResult, type PackResult, type Sandbox } from '../src/engine/index.js';
import { DEFAULT_PACK_LEVEL } from '../src/hub/pack.js';
import { PACK_EXTENSION } from '../src/hub/pack-manifest.js';
import { publishPack } from '../src/hub/publish.js';
import { startHubServer, type HubServer } from '../src/hub/server.js';
import { onProcessExit } from '../src/util/cleanup.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';
const PACKAGE = 'forkd/python-numpy';
const VERSION = 'bench';
const HIGH_LEVEL = 19;
const PULL_RUNS = 3;
const EVAL_CODE = 'numpy.zeros(5).tolist()';
const EVAL_EXPECTED = JSON.stringify([0, 0, 0, 0, 0]);
/** The original Firecracker forkd's python-numpy pack. */
const FIRECRACKER_PACK_MIB = 15.8;
const PACK_TARGET_MIB = 15;
const PULL_TARGET_MS = 3000;

type Ok = Extract<ChildResult, { ok: true }>;

const mib = (bytes: number, digits = 2) => round(bytes / 2 ** 20, digits);

interface PullRun {
  run: number;
  totalMs: number;
  downloadMs: number;
  unpackMs: number;
  downloadBytes: number;
  storedBytes: number;
  verified: string;
}

interface ForkRun {
  source: 'pulled' | 'local';
  n: number;
  wallMs: number;
  restored: number;
  answered: number;
}

/** Temp dirs and live children, released in `finally` and (if interrupted) on process exit. */
class Resources {
  private readonly dirs = new Set<string>();
  private readonly sandboxes = new Set<Sandbox>();
  private readonly forgetDirs: () => void;
  private server: HubServer | null = null;

  constructor() {
    this.forgetDirs = onProcessExit(() => {
      for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
    });
  }

  async tempDir(name: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `forkd-bench-hub-${name}-`));
    this.dirs.add(dir);
    return dir;
  }

  async removeDir(dir: string): Promise<void> {
    await rm(dir, { recursive: true, force: true });
    this.dirs.delete(dir);
  }

  hub(server: HubServer): HubServer {
    this.server = server;
    return server;
  }

  track(sandbox: Sandbox): void {
    this.sandboxes.add(sandbox);
  }

  async kill(sandboxes: readonly Sandbox[]): Promise<void> {
    await Promise.allSettled(sandboxes.map((s) => s.kill()));
    for (const s of sandboxes) this.sandboxes.delete(s);
  }

  async release(): Promise<void> {
    await this.kill([...this.sandboxes]);
    await this.server?.close().catch(() => undefined);
    this.server = null;
    for (const dir of [...this.dirs]) await this.removeDir(dir).catch(() => undefined);
    this.forgetDirs();
  }
}

export async function benchHub(engine: Engine, log: (s: string) => void): Promise<void> {
  if (!(await engine.store.exists(TAG))) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  const res = new Resources();
  try {
    await run(engine, manifest.machine.accel, res, log);
  } finally {
    await res.release();
  }
}

async function run(engine: Engine, accel: string, res: Resources, log: (s: string) => void): Promise<void> {
  const rows: BenchRow[] = [];
  const packDir = await res.tempDir('pack');

  // 1. Pack at the default level and at 19.
  log(`pack at level ${DEFAULT_PACK_LEVEL}`);
  const pack = await timedPack(engine, join(packDir, `level${DEFAULT_PACK_LEVEL}${PACK_EXTENSION}`));
  const files = pack.manifest.files;
  const logical = files.reduce((sum, f) => sum + f.size, 0);
  const stored = files.reduce((sum, f) => sum + f.stored_bytes, 0);
  const packMib = mib(pack.bytes);
  rows.push({
    metric: `pack size, zstd level ${DEFAULT_PACK_LEVEL} (default)`,
    value: packMib,
    unit: 'MiB',
    note: `${round(stored / pack.bytes, 1)}:1 over stored bytes; Firecracker forkd ${FIRECRACKER_PACK_MIB} MiB`,
    target: `≤ ${PACK_TARGET_MIB} MiB`,
    met: packMib <= PACK_TARGET_MIB,
  });
  rows.push({
    metric: `pack time, level ${DEFAULT_PACK_LEVEL}`,
    value: pack.timings.scanMs + pack.timings.writeMs,
    unit: 'ms',
    note: `scan ${pack.timings.scanMs} ms + write ${pack.timings.writeMs} ms`,
  });
  rows.push({ metric: 'pack scan (sha256 + data extents)', value: pack.timings.scanMs, unit: 'ms' });
  rows.push({ metric: 'pack write (tar + zstd)', value: pack.timings.writeMs, unit: 'ms' });
  rows.push({ metric: 'snapshot logical bytes', value: mib(logical, 1), unit: 'MiB' });
  rows.push({
    metric: 'snapshot stored bytes (non-zero data blocks)',
    value: mib(stored, 1),
    unit: 'MiB',
    note: `${round((100 * stored) / logical, 1)} % of logical`,
  });
  for (const f of files) {
    // Small files in KiB: 0 MiB says nothing.
    const [div, unit] = f.size < 2 ** 20 ? [2 ** 10, 'KiB'] : [2 ** 20, 'MiB'];
    rows.push({
      metric: `file ${f.path}`,
      value: round(f.size / div, 2),
      unit,
      note: `stored ${round(f.stored_bytes / div, 2)} ${unit}`,
    });
  }

  log(`pack at level ${HIGH_LEVEL} (about a minute)`);
  const high = await timedPack(engine, join(packDir, `level${HIGH_LEVEL}${PACK_EXTENSION}`), HIGH_LEVEL);
  rows.push({
    metric: `pack size, zstd level ${HIGH_LEVEL}`,
    value: mib(high.bytes),
    unit: 'MiB',
    note: `${round((100 * high.bytes) / pack.bytes, 1)} % of level ${DEFAULT_PACK_LEVEL}`,
    target: `≤ ${PACK_TARGET_MIB} MiB`,
    met: mib(high.bytes) <= PACK_TARGET_MIB,
  });
  rows.push({
    metric: `pack time, level ${HIGH_LEVEL}`,
    value: high.timings.scanMs + high.timings.writeMs,
    unit: 'ms',
    note: `scan ${high.timings.scanMs} ms + write ${high.timings.writeMs} ms`,
  });
  await rm(high.path, { force: true });

  // 2. Publish on a loopback hub and pull into fresh data dirs.
  const hubDir = await res.tempDir('hubdir');
  const server = res.hub(await startHubServer({ dir: hubDir }));
  const published = await publishPack({ hubDir, file: pack.path, name: PACKAGE, version: VERSION });
  log(
    `published ${published.name}@${published.version} on ${server.url} (${published.entry.size_bytes} bytes)`,
  );

  const pulls: PullRun[] = [];
  let pulledDir = '';
  for (let i = 1; i <= PULL_RUNS; i++) {
    const dataDir = await res.tempDir(`pull${i}`);
    const target = new Engine({ dataDir });
    const t = performance.now();
    // The bench's pack is unsigned: a signature check is one ed25519 verify of the manifest, noise here.
    const trust = { keys: new Map(), allowUnsigned: true };
    const pulled = await target.pull({ ref: `${PACKAGE}@${VERSION}`, hub: server.url, tag: TAG, trust });
    const totalMs = round(performance.now() - t, 0);
    pulls.push({
      run: i,
      totalMs,
      downloadMs: pulled.downloadMs,
      unpackMs: pulled.unpackMs,
      downloadBytes: pulled.downloadBytes,
      storedBytes: pulled.storedBytes,
      verified: pulled.verified,
    });
    log(`pull ${i}: ${totalMs} ms (download ${pulled.downloadMs} ms, unpack ${pulled.unpackMs} ms)`);
    rows.push({
      metric: `pull + unpack run ${i} (fresh data dir)`,
      value: totalMs,
      unit: 'ms',
      note: `download ${pulled.downloadMs} ms, unpack + verify ${pulled.unpackMs} ms`,
    });
    // Keep the last pulled data dir for the fork comparison.
    if (i < PULL_RUNS) await res.removeDir(dataDir);
    else pulledDir = dataDir;
  }
  const median = (pick: (p: PullRun) => number) => percentile(pulls.map(pick), 50);
  const pullMedian = median((p) => p.totalMs);
  rows.push({
    metric: `pull + unpack, median of ${PULL_RUNS} (loopback)`,
    value: pullMedian,
    unit: 'ms',
    note: `download ${median((p) => p.downloadMs)} ms, unpack ${median((p) => p.unpackMs)} ms`,
    target: `≤ ${PULL_TARGET_MS} ms`,
    met: pullMedian <= PULL_TARGET_MS,
  });
  rows.push({ metric: `download, median of ${PULL_RUNS}`, value: median((p) => p.downloadMs), unit: 'ms' });
  rows.push({
    metric: `unpack + verify, median of ${PULL_RUNS}`,
    value: median((p) => p.unpackMs),
    unit: 'ms',
  });
  await server.close();

  // 3. First forks from the pulled copy, then from the local snapshot.
  // One unrecorded fork first: the first QEMU start of a process pays for
  // loading QEMU itself, which is not what the comparison is about.
  await forkAndEval(engine, 'local', 1, res);
  const forks: ForkRun[] = [];
  const pulledEngine = new Engine({ dataDir: pulledDir });
  for (const [source, eng] of [
    ['pulled', pulledEngine],
    ['local', engine],
  ] as const) {
    for (const n of [1, 10]) {
      log(`fork n=${n} from the ${source} snapshot`);
      forks.push(await forkAndEval(eng, source, n, res));
    }
  }
  for (const n of [1, 10]) {
    const pulled = forks.find((f) => f.source === 'pulled' && f.n === n)!;
    const local = forks.find((f) => f.source === 'local' && f.n === n)!;
    for (const f of [pulled, local]) {
      rows.push({
        metric: `fork n=${n} from the ${f.source} snapshot${f.source === 'pulled' ? ' (first forks after the pull)' : ''}`,
        value: f.wallMs,
        unit: 'ms',
        note: `${f.answered}/${n} answered eval (${f.restored} restored)`,
      });
    }
    rows.push({
      metric: `fork n=${n}: pulled / local`,
      value: round(pulled.wallMs / local.wallMs),
      unit: 'x',
    });
  }

  const table = await writeResults('hub', machineSummary(accel), rows, {
    snapshot: TAG,
    package: `${PACKAGE}@${VERSION}`,
    pack: {
      level: DEFAULT_PACK_LEVEL,
      bytes: pack.bytes,
      sha256: pack.sha256,
      timings: pack.timings,
      logicalBytes: logical,
      storedBytes: stored,
      files,
    },
    packHigh: { level: HIGH_LEVEL, bytes: high.bytes, timings: high.timings },
    pulls,
    forks,
    targets: {
      packMib: { target: PACK_TARGET_MIB, value: packMib, met: packMib <= PACK_TARGET_MIB },
      pullMs: { target: PULL_TARGET_MS, value: pullMedian, met: pullMedian <= PULL_TARGET_MS },
    },
  });
  log(
    `target pack ≤ ${PACK_TARGET_MIB} MiB: ${packMib <= PACK_TARGET_MIB ? 'met' : 'not met'} (${packMib} MiB)`,
  );
  log(
    `target pull + unpack ≤ ${PULL_TARGET_MS} ms: ${pullMedian <= PULL_TARGET_MS ? 'met' : 'not met'} (${pullMedian} ms)`,
  );
  log('\n' + table);
}

async function timedPack(engine: Engine, output: string, level?: number): Promise<PackResult> {
  return engine.pack(TAG, { output, level });
}

async function forkAndEval(
  engine: Engine,
  source: ForkRun['source'],
  n: number,
  res: Resources,
): Promise<ForkRun> {
  const result = await engine.fork({ tag: TAG, n });
  const ok = result.children.filter((c): c is Ok => c.ok);
  ok.forEach((c) => res.track(c.sandbox));
  try {
    const answers = await Promise.all(
      ok.map(async (c) => {
        try {
          const r = await c.sandbox.agent.eval(EVAL_CODE, { timeoutMs: 30_000 });
          return r.error === null && JSON.stringify(r.result) === EVAL_EXPECTED;
        } catch {
          return false;
        }
      }),
    );
    return {
      source,
      n,
      wallMs: result.wallMs,
      restored: ok.length,
      answered: answers.filter(Boolean).length,
    };
  } finally {
    await res.kill(ok.map((c) => c.sandbox));
  }
}
