// `npm run bench -- chain`: a diff chain of three realistic deltas on
// python-numpy, with no internet in the guest: Debian's python3-pandas, then
// python3-scipy, then python3-sklearn. The host works out which packages the
// guest lacks and fetches their .debs (guest-apt.ts); each link is a child of
// the previous one that gets them through the files API, installs them with
// dpkg -i and imports the module in its warm runtime, then is branched as a
// diff. Per link: the diff's physical size (RAM and disk), the time to make
// it, its pack's size and the time to pull it back by URL from a loopback hub
// with its ancestors present. Then cold forks (n = 1 and 10) from depth 0 to
// 3. Targets are reported, never asserted.
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  diffFromChange,
  type BranchTimings,
  type ChildResult,
  type Engine,
  type Sandbox,
} from '../src/engine/index.js';
import type { AgentClient } from '../src/engine/agent/client.js';
import { PACK_EXTENSION } from '../src/hub/pack-manifest.js';
import { publishPack } from '../src/hub/publish.js';
import { startHubServer, type HubServer } from '../src/hub/server.js';
import { diffSizes, SNAPSHOT_FILES, MANIFEST_FILE } from '../src/snapshot/manifest.js';
import { onProcessExit } from '../src/util/cleanup.js';
import { GuestApt } from './guest-apt.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const ROOT = 'python-numpy';
interface LinkSpec {
  depth: number;
  tag: string;
  pkg: string;
  module: string;
}
const LINKS: readonly LinkSpec[] = [
  { depth: 1, tag: 'bench-chain-pandas', pkg: 'python3-pandas', module: 'pandas' },
  { depth: 2, tag: 'bench-chain-scipy', pkg: 'python3-scipy', module: 'scipy' },
  { depth: 3, tag: 'bench-chain-sklearn', pkg: 'python3-sklearn', module: 'sklearn' },
];
/** On the guest's disk: its /tmp is a tmpfs, which would put the .debs in the RAM being measured. */
const GUEST_DEB_DIR = '/var/tmp/forkd-debs';
/** Room left on the guest's disk beyond the .debs and what they unpack to (dpkg's database, logs). */
const DISK_MARGIN_BYTES = 64 * 2 ** 20;
const FORK_NS = [1, 10];
const FORK_REPS = 7;
const PULL_REPS = 2;
const INSTALL_TIMEOUT_MS = 30 * 60_000;
const IMPORT_TIMEOUT_MS = 10 * 60_000;
const PANDAS_DIFF_TARGET_MIB = 60;
const FORK_RATIO_TARGET = 1.05;
/** What a diff pack may carry: the link's diff files, its device state and its manifest. */
const DIFF_PACK_FILES = new Set<string>([
  SNAPSHOT_FILES.memoryDiff,
  SNAPSHOT_FILES.diskDiff,
  SNAPSHOT_FILES.vmstate,
  MANIFEST_FILE,
]);

type Ok = Extract<ChildResult, { ok: true }>;
const mib = (bytes: number, digits = 1) => round(bytes / 2 ** 20, digits);
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const median = (xs: readonly number[]) => round(percentile([...xs], 50), 0);

/** What installing one link's package took. */
interface InstallRecord {
  /** Packages the guest lacked, in apt's order. */
  packages: string[];
  debBytes: number;
  installedBytes: number;
  copyMs: number;
  dpkgMs: number;
  importMs: number;
  moduleVersion: string;
  /** The guest's RAM after the install, after dropping its page cache, and after the import. */
  guestMeminfoKib: { atFork: Meminfo; afterInstall: Meminfo; afterDrop: Meminfo; afterImport: Meminfo };
}

interface LinkRun extends LinkSpec, InstallRecord {
  parent: string;
  /** Fork of the parent → the link written. */
  buildMs: number;
  branch: BranchTimings;
  diffMs: number;
  memory: { pages: number; logicalBytes: number; physicalBytes: number };
  disk: { logicalBytes: number; physicalBytes: number } | null;
  diffPhysicalBytes: number;
  pack: { bytes: number; files: string[]; ms: number; url: string } | null;
}

interface ForkRun {
  depth: number;
  n: number;
  rep: number;
  wallMs: number;
  restored: number;
  /** Children whose runtime had exactly this depth's modules imported. */
  answered: number;
}

interface PullRun {
  depth: number;
  rep: number;
  ms: number;
  downloadMs: number;
  unpackMs: number;
  downloadBytes: number;
  files: string[];
}

/** Temp dirs, the hub, live children and the chain's tags, released in `finally` and (if interrupted) on exit. */
class Resources {
  private readonly dirs = new Set<string>();
  private readonly sandboxes = new Set<Sandbox>();
  private readonly forget: () => void;
  server: HubServer | null = null;

  constructor(private readonly engine: Engine) {
    // QEMU processes are killed on exit by the engine; the rest is ours to remove.
    this.forget = onProcessExit(() => {
      for (const dir of this.dirs) rmSync(dir, { recursive: true, force: true });
      for (const link of LINKS) {
        rmSync(engine.dataDir.snapshotDir(link.tag), { recursive: true, force: true });
      }
    });
  }

  async tempDir(name: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), `forkd-bench-chain-${name}-`));
    this.dirs.add(dir);
    return dir;
  }

  track(sandboxes: readonly Sandbox[]): void {
    for (const s of sandboxes) this.sandboxes.add(s);
  }

  async kill(sandboxes: readonly Sandbox[]): Promise<void> {
    await Promise.allSettled(sandboxes.map((s) => s.kill()));
    for (const s of sandboxes) this.sandboxes.delete(s);
  }

  async removeChain(): Promise<void> {
    if (await this.engine.store.exists(LINKS[0]!.tag)) {
      await this.engine.removeSnapshot(LINKS[0]!.tag, { cascade: true });
    }
  }

  async release(): Promise<void> {
    await this.kill([...this.sandboxes]);
    await this.server?.close().catch(() => undefined);
    this.server = null;
    await this.removeChain().catch(() => undefined);
    for (const dir of this.dirs) await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    this.forget();
  }
}

export async function benchChain(engine: Engine, log: (s: string) => void): Promise<void> {
  const started = Date.now();
  // A root left by an earlier run is kept only if it is of today's image (a
  // changed builder or agent makes another image, which is what to measure).
  const image = await engine.imageFor('python-numpy');
  const existing = (await engine.store.exists(ROOT)) ? (await engine.store.getReady(ROOT)).manifest : null;
  if (existing?.image.contentHash !== image.contentHash) {
    log(`creating snapshot ${ROOT}`);
    await engine.createSnapshot({ tag: ROOT, recipe: 'python-numpy', onProgress: log, replace: true });
  }
  const { manifest } = await engine.store.getReady(ROOT);
  const res = new Resources(engine);
  try {
    // Left over by an interrupted earlier run: the tags would collide. The
    // loop takes what the cascade cannot (a link left half-written).
    await res.removeChain();
    for (const link of LINKS) await engine.store.remove(link.tag).catch(() => undefined);
    const links = await buildChain(engine, log);
    const forks = await forkRuns(engine, res, log);
    const packDir = await res.tempDir('packs');
    const selfContainedBytes = await packLinks(engine, links, packDir, res, log);
    const pulls = await pullRuns(engine, links, res, log);
    const runSeconds = round((Date.now() - started) / 1000, 0);
    const rows = summarize(links, forks, pulls, selfContainedBytes, runSeconds);
    const table = await writeResults('chain', machineSummary(manifest.machine.accel), rows, {
      root: ROOT,
      guestMemoryMib: manifest.machine.memoryMib,
      runSeconds,
      links,
      forks,
      pulls,
      selfContainedDepth3PackBytes: selfContainedBytes,
    });
    for (const row of rows.filter((r) => r.met !== undefined)) {
      log(`target ${row.metric} ${row.target}: ${row.met ? 'met' : 'not met'} (${row.value} ${row.unit})`);
    }
    log(`run time ${runSeconds} s`);
    log('\n' + table);
  } finally {
    await res.release();
  }
}

async function buildChain(engine: Engine, log: (s: string) => void): Promise<LinkRun[]> {
  // The guest's own sources.list: the packages are the ones its apt would install.
  const probe = await forkOne(engine, ROOT);
  const sources = await probe.agent.readFile('/etc/apt/sources.list').finally(() => probe.kill());
  log(`host apt for the guest's sources: ${sources.toString().trim()}`);
  const apt = await GuestApt.open(join(engine.dataDir.cacheDir, 'bench-chain'), sources.toString());
  const links: LinkRun[] = [];
  let parent = ROOT;
  for (const link of LINKS) {
    const t = Date.now();
    const done: { install?: InstallRecord } = {};
    const { manifest, timings } = await diffFromChange(engine, {
      from: parent,
      tag: link.tag,
      onProgress: (step) => log(`  ${link.tag}: ${step}`),
      change: async (sandbox) => {
        done.install = await installAndImport(sandbox.agent, link, apt, log);
      },
    });
    const diff = manifest.diff;
    if (!diff || !done.install) throw new Error(`${link.tag} was written without a diff`);
    const run: LinkRun = {
      ...link,
      parent,
      ...done.install,
      buildMs: Date.now() - t,
      branch: timings,
      diffMs: diff.ms,
      memory: {
        pages: diff.memory.pages,
        logicalBytes: diff.memory.logicalBytes,
        physicalBytes: diff.memory.physicalBytes,
      },
      disk: diff.disk
        ? { logicalBytes: diff.disk.logicalBytes, physicalBytes: diff.disk.physicalBytes }
        : null,
      diffPhysicalBytes: diffSizes(manifest)?.physicalBytes ?? 0,
      pack: null,
    };
    log(
      `${link.tag}: diff RAM ${mib(run.memory.physicalBytes)} MiB (${run.memory.pages} pages), ` +
        `disk ${mib(run.disk?.physicalBytes ?? 0)} MiB, made in ${run.diffMs} ms ` +
        `(branch ${timings.totalMs} ms); link built in ${round(run.buildMs / 1000, 0)} s`,
    );
    links.push(run);
    parent = link.tag;
  }
  return links;
}

/** The change of one link: the .debs in through the files API, dpkg -i, the module imported in the warm runtime. */
async function installAndImport(
  agent: AgentClient,
  link: LinkSpec,
  apt: GuestApt,
  log: (s: string) => void,
): Promise<InstallRecord> {
  const atFork = await meminfo(agent);
  const plan = await apt.plan(await agent.readFile('/var/lib/dpkg/status'), link.pkg);
  if (plan.length === 0) throw new Error(`${link.pkg} is installed already`);
  const debs = await apt.download(plan);
  const debBytes = sum(debs.map((d) => d.bytes));
  const installedBytes = sum(debs.map((d) => d.installedKib)) * 1024;
  const avail = Number((await sh(agent, `df -B1 --output=avail /var/tmp | tail -n 1`)).trim());
  const need = debBytes + installedBytes + DISK_MARGIN_BYTES;
  log(
    `  ${link.pkg}: ${debs.length} packages, .debs ${mib(debBytes)} MiB, ` +
      `${mib(installedBytes)} MiB installed; guest disk ${mib(avail)} MiB free`,
  );
  if (avail < need) {
    throw new Error(
      `the guest's disk has ${mib(avail)} MiB free, ${link.pkg} needs ~${mib(need)} MiB ` +
        `(the python-numpy image leaves 1 GiB of headroom: HEADROOM_BYTES in src/image/rootfs.ts)`,
    );
  }

  let t = Date.now();
  for (const deb of debs) {
    const data = await readFile(join(apt.debDir, deb.file));
    await agent.writeFile(
      `${GUEST_DEB_DIR}/${deb.file}`,
      data,
      { parents: true },
      { timeoutMs: 10 * 60_000 },
    );
  }
  const copyMs = Date.now() - t;
  log(`  copied in ${debs.length} .debs in ${copyMs} ms`);

  t = Date.now();
  await sh(agent, ['dpkg', '-i', ...debs.map((d) => `${GUEST_DEB_DIR}/${d.file}`)], INSTALL_TIMEOUT_MS);
  const dpkgMs = Date.now() - t;
  log(`  dpkg -i in ${round(dpkgMs / 1000, 0)} s`);

  // What the delivery left behind is not part of the delta: the .debs and
  // the page cache the install filled. The .debs are removed and trimmed
  // (fstrim discards their clusters from the disk layer; the sync first
  // commits the removal, or ext4 still counts the blocks as used and trims
  // around them). The cache is dropped (freed pages are zeroed,
  // init_on_free=1); the import then reads back what it needs, as any fresh
  // import would.
  const before = await meminfo(agent);
  await sh(agent, `rm -rf ${GUEST_DEB_DIR} && sync && fstrim / && echo 3 > /proc/sys/vm/drop_caches`);
  const dropped = await meminfo(agent);

  t = Date.now();
  const r = await agent.eval(`import ${link.module}\n${link.module}.__version__`, {
    timeoutMs: IMPORT_TIMEOUT_MS,
  });
  if (r.error !== null)
    throw new Error(`import ${link.module} raised: ${r.error.trim().split('\n').pop() ?? ''}`);
  const importMs = Date.now() - t;
  const imported = await meminfo(agent);
  const delta = (f: keyof Meminfo) => `${mib((imported[f] - atFork[f]) * 1024, 1)} MiB`;
  log(
    `  import ${link.module} ${String(r.result)} in ${importMs} ms (warm runtime); guest page cache ` +
      `${mib(before.Cached * 1024)} MiB after dpkg, ${mib(dropped.Cached * 1024)} after the drop; since the fork: ` +
      `anonymous ${delta('AnonPages')}, page cache ${delta('Cached')}, slab ${delta('Slab')}`,
  );
  return {
    packages: debs.map((d) => d.name),
    debBytes,
    installedBytes,
    copyMs,
    dpkgMs,
    importMs,
    moduleVersion: String(r.result),
    guestMeminfoKib: { atFork, afterInstall: before, afterDrop: dropped, afterImport: imported },
  };
}

const MEMINFO_FIELDS = ['MemFree', 'AnonPages', 'Cached', 'Slab', 'PageTables'] as const;
type Meminfo = Record<(typeof MEMINFO_FIELDS)[number], number>;

/** The guest's /proc/meminfo figures that say where its RAM went, in KiB. */
async function meminfo(agent: AgentClient): Promise<Meminfo> {
  const text = await sh(agent, 'cat /proc/meminfo');
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return Object.fromEntries(MEMINFO_FIELDS.map((f) => [f, kib(f)])) as Meminfo;
}

/** Runs a command in the guest; its stdout, or an error with the end of its output. */
async function sh(agent: AgentClient, cmd: string | string[], timeoutMs = 5 * 60_000): Promise<string> {
  const req = typeof cmd === 'string' ? { shell: cmd } : { args: cmd };
  const r = await agent.exec({ ...req, env: { DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs });
  if (r.exitCode !== 0) {
    const tail = Buffer.concat([r.stdout, r.stderr]).toString().trim().split('\n').slice(-5).join(' | ');
    const what = typeof cmd === 'string' ? cmd : cmd.slice(0, 3).join(' ');
    throw new Error(`guest command ${JSON.stringify(what)} exited ${r.exitCode}: ${tail}`);
  }
  return r.stdout.toString();
}

async function forkOne(engine: Engine, tag: string): Promise<Sandbox> {
  const child = (await engine.fork({ tag, n: 1 })).children[0];
  if (!child?.ok) throw child?.error ?? new Error('no child');
  return child.sandbox;
}

const tagAt = (depth: number) => (depth === 0 ? ROOT : LINKS[depth - 1]!.tag);
/** In a child of depth d, the runtime has imported exactly the first d modules. */
const IMPORTED = `import sys; [m in sys.modules for m in ${JSON.stringify(LINKS.map((l) => l.module))}]`;
const expectedImports = (depth: number) => JSON.stringify(LINKS.map((l) => l.depth <= depth));

/** Cold forks from each depth, round by round (depths interleaved, so drift on a noisy host hits all alike). */
async function forkRuns(engine: Engine, res: Resources, log: (s: string) => void): Promise<ForkRun[]> {
  // The first QEMU start of a process pays for loading QEMU itself.
  const warm = await engine.fork({ tag: ROOT, n: 1 });
  await res.kill(warm.children.filter((c): c is Ok => c.ok).map((c) => c.sandbox));
  const runs: ForkRun[] = [];
  for (let rep = 1; rep <= FORK_REPS; rep++) {
    for (const n of FORK_NS) {
      for (let depth = 0; depth <= LINKS.length; depth++) {
        const result = await engine.fork({ tag: tagAt(depth), n });
        const ok = result.children.filter((c): c is Ok => c.ok);
        res.track(ok.map((c) => c.sandbox));
        try {
          const answers = await Promise.all(
            ok.map((c) =>
              c.sandbox.agent
                .eval(IMPORTED, { timeoutMs: 60_000 })
                .then((r) => r.error === null && JSON.stringify(r.result) === expectedImports(depth))
                .catch(() => false),
            ),
          );
          runs.push({
            depth,
            n,
            rep,
            wallMs: result.wallMs,
            restored: ok.length,
            answered: answers.filter(Boolean).length,
          });
        } finally {
          await res.kill(ok.map((c) => c.sandbox));
        }
      }
      const mine = runs.filter((r) => r.rep === rep && r.n === n);
      log(`fork n=${n} round ${rep}: ${mine.map((r) => `depth ${r.depth} ${r.wallMs} ms`).join(', ')}`);
    }
  }
  return runs;
}

/** Packs every link (a diff pack) and, to compare, the deepest link whole; returns the latter's size. */
async function packLinks(
  engine: Engine,
  links: LinkRun[],
  packDir: string,
  res: Resources,
  log: (s: string) => void,
): Promise<number> {
  const hubDir = await res.tempDir('hub');
  const server = (res.server = await startHubServer({ dir: hubDir }));
  for (const link of links) {
    const t = Date.now();
    const pack = await engine.pack(link.tag, { output: join(packDir, `${link.tag}${PACK_EXTENSION}`) });
    const ms = Date.now() - t;
    const published = await publishPack({
      hubDir,
      file: pack.path,
      name: `bench/${link.tag}`,
      version: 'bench',
      move: true,
    });
    const url = new URL(published.entry.url, `${server.url}/`).href;
    link.pack = { bytes: pack.bytes, files: pack.manifest.files.map((f) => f.path), ms, url };
    log(`${link.tag}: diff pack ${mib(pack.bytes, 2)} MiB in ${ms} ms (${link.pack.files.join(', ')})`);
  }
  const deepest = links[links.length - 1]!;
  const whole = await engine.pack(deepest.tag, {
    output: join(packDir, `whole${PACK_EXTENSION}`),
    selfContained: true,
  });
  await rm(whole.path, { force: true });
  log(`${deepest.tag}: self-contained pack ${mib(whole.bytes, 2)} MiB`);
  return whole.bytes;
}

/** Removes the chain, then pulls each link back by URL, root first, so each has its ancestors present. */
async function pullRuns(
  engine: Engine,
  links: LinkRun[],
  res: Resources,
  log: (s: string) => void,
): Promise<PullRun[]> {
  const pulls: PullRun[] = [];
  // The bench's packs are unsigned: a signature check is one ed25519 verify of the manifest, noise here.
  const trust = { keys: new Map(), allowUnsigned: true };
  for (let rep = 1; rep <= PULL_REPS; rep++) {
    await res.removeChain();
    for (const link of links) {
      const t = performance.now();
      const pulled = await engine.pull({ ref: link.pack!.url, tag: link.tag, trust });
      const ms = round(performance.now() - t, 0);
      pulls.push({
        depth: link.depth,
        rep,
        ms,
        downloadMs: pulled.downloadMs,
        unpackMs: pulled.unpackMs,
        downloadBytes: pulled.downloadBytes,
        files: pulled.pack.files.map((f) => f.path),
      });
      log(
        `pull ${link.tag} (rep ${rep}): ${ms} ms, ${mib(pulled.downloadBytes, 2)} MiB moved ` +
          `(download ${pulled.downloadMs} ms, unpack ${pulled.unpackMs} ms)`,
      );
    }
  }
  return pulls;
}

function summarize(
  links: LinkRun[],
  forks: ForkRun[],
  pulls: PullRun[],
  selfContainedBytes: number,
  runSeconds: number,
): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const l of links) {
    const at = `depth ${l.depth} (+${l.pkg})`;
    const diffMib = mib(l.diffPhysicalBytes);
    rows.push({
      metric: `${at}: packages installed`,
      value: l.packages.length,
      unit: '',
      note: `.debs ${mib(l.debBytes)} MiB, ${mib(l.installedBytes)} MiB installed; copy in ${l.copyMs} ms, dpkg -i ${round(l.dpkgMs / 1000, 0)} s, import ${l.importMs} ms`,
    });
    rows.push({
      metric: `${at}: diff physical size, RAM + disk`,
      value: diffMib,
      unit: 'MiB',
      note: `RAM ${mib(l.memory.physicalBytes)} MiB (${l.memory.pages} pages changed), disk ${mib(l.disk?.physicalBytes ?? 0)} MiB`,
      ...(l.depth === 1
        ? { target: `≤ ${PANDAS_DIFF_TARGET_MIB} MiB`, met: diffMib <= PANDAS_DIFF_TARGET_MIB }
        : {}),
    });
    rows.push({
      metric: `${at}: time to make the diff`,
      value: l.diffMs,
      unit: 'ms',
      note: `whole branch ${l.branch.totalMs} ms: pause ${l.branch.pauseMs} ms, copy ${l.branch.migrateMs} ms, finish ${l.branch.finishMs} ms`,
    });
    rows.push({
      metric: `${at}: pack size (diff pack)`,
      value: mib(l.pack?.bytes ?? 0, 2),
      unit: 'MiB',
      note: `written in ${l.pack?.ms ?? 0} ms`,
    });
    const mine = pulls.filter((p) => p.depth === l.depth);
    rows.push({
      metric: `${at}: pull by URL, ancestors present, median of ${mine.length}`,
      value: median(mine.map((p) => p.ms)),
      unit: 'ms',
      note: `${mib(mine[0]?.downloadBytes ?? 0, 2)} MiB moved; download ${median(mine.map((p) => p.downloadMs))} ms, unpack ${median(mine.map((p) => p.unpackMs))} ms`,
    });
  }

  const deepest = links[links.length - 1]!;
  const deepPulls = pulls.filter((p) => p.depth === deepest.depth);
  const onlyDiff = deepPulls.every(
    (p) => p.downloadBytes === deepest.pack?.bytes && p.files.every((f) => DIFF_PACK_FILES.has(f)),
  );
  rows.push({
    metric: `pull of depth ${deepest.depth}, ancestors present: bytes moved`,
    value: mib(deepPulls[0]?.downloadBytes ?? 0, 2),
    unit: 'MiB',
    note: `its diff pack (${deepPulls[0]?.files.join(', ') ?? ''}); the link packed whole: ${mib(selfContainedBytes, 2)} MiB`,
    target: 'only its diff',
    met: onlyDiff,
  });

  const deepestDepth = LINKS.length;
  for (const n of FORK_NS) {
    const at = (depth: number) => forks.filter((f) => f.n === n && f.depth === depth);
    const base = median(at(0).map((f) => f.wallMs));
    for (let depth = 0; depth <= deepestDepth; depth++) {
      const mine = at(depth);
      const ms = median(mine.map((f) => f.wallMs));
      const ratio = round(ms / base, 3);
      const answered = sum(mine.map((f) => f.answered));
      rows.push({
        metric: `fork n=${n} from depth ${depth}, cold, median of ${mine.length}`,
        value: ms,
        unit: 'ms',
        note: `${ratio}x depth 0; ${answered}/${n * mine.length} children had depth ${depth}'s imports`,
        ...(depth === deepestDepth
          ? { target: `≤ ${FORK_RATIO_TARGET}x depth 0`, met: ratio <= FORK_RATIO_TARGET }
          : {}),
      });
    }
  }
  rows.push({ metric: 'bench run time', value: runSeconds, unit: 's' });
  return rows;
}
