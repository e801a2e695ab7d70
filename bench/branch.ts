// `npm run bench -- branch`: live branches of a running python-numpy child
// (512 MiB guest). For each workload (~100 MiB, then ~300 MiB of guest memory
// touched through the warm runtime) one child is forked and branched 20 times
// in a row: the source's pause (STOP→RESUME), the live copy, the whole
// branch, the branch's RAM file on disk and, for every fifth branch, branch
// start → a grandchild of the new tag answering an eval. The source's QMP
// traffic is traced (event timestamps and command round trips) to tell what
// the pause is made of. Targets are reported, never asserted.
import { rmSync } from 'node:fs';
import type { ChildResult, Engine, Sandbox } from '../src/engine/index.js';
import { errorMessage } from '../src/errors.js';
import type { CallOptions } from '../src/util/abort.js';
import { onProcessExit } from '../src/util/cleanup.js';
import type { QmpClient, QmpEvent } from '../src/vmm/qmp.js';
import { machineSummary, percentile, round, writeResults, type BenchRow } from './support.js';

const TAG = 'python-numpy';
const TAG_PREFIX = 'bench-br-';
const WORKLOADS_MIB = [100, 300];
const BRANCHES = 20;
/** Every GRANDCHILD_EVERY-th branch is timed through to a grandchild answering. */
const GRANDCHILD_EVERY = 5;
/** Between branches the source dirties one float64 per page of the first 8 MiB of its ballast. */
const RETOUCH = 'ballast[: 2**20 : 512] += 1';
const EVAL_TIMEOUT_MS = 120_000;
const PAUSE_TARGET_MS = 5;
/** The original Firecracker forkd's live mode, on a 1.5 GiB source. */
const FIRECRACKER_PAUSE_MS = 56;

const nowMs = () => performance.timeOrigin + performance.now();
const eventAt = (e: QmpEvent) =>
  e.timestamp ? e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000 : NaN;

/** What the source's QMP saw during one branch: events (QEMU's clock) and command round trips (ours). */
interface QmpTrace {
  events: { event: string; status?: string; at: number }[];
  commands: { command: string; sent: number; replied: number; ok: boolean }[];
}

/** The pause, cut at the source's QMP events and commands (ms; null when a mark is missing). */
interface PauseBreakdown {
  /**
   * STOP → MIGRATION "completed": vm_stop (drain, flush), the last RAM round,
   * device state and inactivating the disk. (QEMU 7.2 reports no "device"
   * status without pause-before-switchover, so this is one span.)
   */
  stopToCompleted: number | null;
  /** MIGRATION "completed" → forkd sends its first command (event delivery, promise chain). */
  completedToNextCommand: number | null;
  /** query-block round trip inside the pause (0 when the engine looks the disk up before the copy). */
  queryBlock: number | null;
  blockdevSnapshotSync: number | null;
  /** `cont` sent → RESUME event (reactivating the disk, restarting the vCPUs). */
  contToResume: number | null;
  /** `cont` sent → its reply. */
  contRoundTrip: number | null;
  /** STOP → RESUME from the events (should equal the engine's pauseMs). */
  stopToResume: number | null;
  /** QEMU's own downtime figure (query-migrate), which ends at "completed". */
  qemuDowntime: number | null;
  /** Dirty-memory passes of the live copy (MIGRATION_PASS events). */
  passes: number;
  /** The pause window as traced, in ms from STOP: events at QEMU's time, commands sent → replied. */
  window: string[];
}

interface BranchRun {
  workloadMib: number;
  index: number;
  tag: string;
  pauseMs: number;
  migrateMs: number;
  finishMs: number;
  totalMs: number;
  /** Backing files under the source's active disk layer after this branch (query-block). */
  diskChainDepth: number | null;
  memoryPhysicalMib: number;
  pause: PauseBreakdown;
  /** Whether a grandchild was forked from this branch (every GRANDCHILD_EVERY-th). */
  grandchild: boolean;
  /** Branch start → the grandchild's eval answered. */
  toGrandchildMs: number | null;
  grandchildForkMs: number | null;
  grandchildEvalMs: number | null;
  grandchildAnswer: unknown;
}

type Execute = QmpClient['execute'];

/** Trace a sandbox's QMP: listen to its events and time its commands (the engine's own calls included). */
function traceQmp(qmp: QmpClient): { trace: QmpTrace; reset: () => void; stop: () => void } {
  const trace: QmpTrace = { events: [], commands: [] };
  const onEvent = (e: QmpEvent) => {
    const status = e.data?.status;
    trace.events.push({
      event: e.event,
      ...(typeof status === 'string' ? { status } : {}),
      at: eventAt(e),
    });
  };
  qmp.on('event', onEvent);
  const original: Execute = qmp.execute.bind(qmp);
  const timed = <T>(command: string, args?: Record<string, unknown>, opts?: CallOptions): Promise<T> => {
    const sent = nowMs();
    const done = original<T>(command, args, opts);
    done.then(
      () => trace.commands.push({ command, sent, replied: nowMs(), ok: true }),
      () => trace.commands.push({ command, sent, replied: nowMs(), ok: false }),
    );
    return done;
  };
  qmp.execute = timed;
  return {
    trace,
    reset: () => {
      trace.events.length = 0;
      trace.commands.length = 0;
    },
    stop: () => {
      qmp.off('event', onEvent);
      delete (qmp as { execute?: Execute }).execute; // back to the prototype's
    },
  };
}

function breakdown(trace: QmpTrace, qemuDowntime: number | null): PauseBreakdown {
  const ev = (event: string, status?: string) =>
    trace.events.find((e) => e.event === event && (status === undefined || e.status === status))?.at;
  const span = (from: number | undefined, to: number | undefined) =>
    from === undefined || to === undefined || Number.isNaN(from) || Number.isNaN(to)
      ? null
      : round(to - from, 1);
  const stop = ev('STOP');
  const completed = ev('MIGRATION', 'completed');
  const resume = ev('RESUME');
  // Only what forkd sends once the source has stopped is part of the pause.
  const inPause = trace.commands.filter((c) => stop !== undefined && c.sent >= stop);
  const cmd = (command: string) => inPause.find((c) => c.command === command);
  const queryBlock = cmd('query-block');
  const snap = cmd('blockdev-snapshot-sync');
  const cont = cmd('cont');
  return {
    stopToCompleted: span(stop, completed),
    completedToNextCommand: span(completed, inPause[0]?.sent),
    queryBlock: queryBlock ? span(queryBlock.sent, queryBlock.replied) : 0,
    blockdevSnapshotSync: span(snap?.sent, snap?.replied),
    contToResume: span(cont?.sent, resume),
    contRoundTrip: span(cont?.sent, cont?.replied),
    stopToResume: span(stop, resume),
    qemuDowntime,
    passes: trace.events.filter((e) => e.event === 'MIGRATION_PASS').length,
    window: stop === undefined ? [] : pauseWindow(trace, stop),
  };
}

function pauseWindow(trace: QmpTrace, stop: number): string[] {
  const at = (t: number) => round(t - stop, 1);
  const lines = [
    ...trace.events
      .filter((e) => e.at >= stop - 1)
      .map((e) => ({ t: e.at, text: `${at(e.at)} ${e.event}${e.status ? ` ${e.status}` : ''}` })),
    ...trace.commands
      .filter((c) => c.replied >= stop - 1)
      .map((c) => ({
        t: c.sent,
        text: `${at(c.sent)}..${at(c.replied)} ${c.command}${c.ok ? '' : ' (failed)'}`,
      })),
  ];
  return lines.sort((a, b) => a.t - b.t).map((l) => l.text);
}

async function backingDepth(qmp: QmpClient): Promise<number | null> {
  type BlockInfo = { inserted?: { backing_file_depth?: number } };
  const blocks = await qmp.execute<BlockInfo[]>('query-block').catch((): BlockInfo[] => []);
  return blocks.find((b) => b.inserted)?.inserted?.backing_file_depth ?? null;
}

async function forkOne(engine: Engine, tag: string): Promise<Sandbox> {
  const child = (await engine.fork({ tag, n: 1 })).children[0] as ChildResult;
  if (!child.ok) throw child.error;
  return child.sandbox;
}

async function evalOk(sandbox: Sandbox, code: string): Promise<unknown> {
  const r = await sandbox.agent.eval(code, { timeoutMs: EVAL_TIMEOUT_MS });
  if (r.error !== null) throw new Error(`eval ${JSON.stringify(code)} failed: ${r.error}`);
  return r.result;
}

/** Snapshots and sandboxes of this run, released in `finally` and (if interrupted) on process exit. */
class Resources {
  readonly tags = new Set<string>();
  readonly sandboxes = new Set<Sandbox>();
  private readonly forget: () => void;

  constructor(private readonly engine: Engine) {
    // QEMU processes are killed on exit by the engine; branch dirs are ours to remove.
    this.forget = onProcessExit(() => {
      for (const tag of this.tags) {
        rmSync(engine.dataDir.snapshotDir(tag), { recursive: true, force: true });
      }
    });
  }

  async removeTag(tag: string): Promise<void> {
    await this.engine.store.remove(tag);
    this.tags.delete(tag);
  }

  async kill(sandbox: Sandbox): Promise<void> {
    await sandbox.kill();
    this.sandboxes.delete(sandbox);
  }

  async release(): Promise<void> {
    await Promise.allSettled([...this.sandboxes].map((s) => this.kill(s)));
    for (const tag of [...this.tags]) await this.removeTag(tag).catch(() => undefined);
    this.forget();
  }
}

export async function benchBranch(engine: Engine, log: (s: string) => void): Promise<void> {
  const benchStarted = Date.now();
  if (!(await engine.store.exists(TAG))) {
    log(`creating snapshot ${TAG}`);
    await engine.createSnapshot({ tag: TAG, recipe: 'python-numpy', onProgress: log });
  }
  const { manifest } = await engine.store.getReady(TAG);
  // Left over by an interrupted earlier run: the tags would collide.
  for (const record of await engine.store.list()) {
    if (!record.tag.startsWith(TAG_PREFIX)) continue;
    log(`removing ${record.tag} left by an earlier run`);
    await engine.store.remove(record.tag);
  }

  const res = new Resources(engine);
  const runs: BranchRun[] = [];
  try {
    for (const mib of WORKLOADS_MIB) runs.push(...(await workload(engine, mib, res, log)));
  } finally {
    await res.release();
  }
  const runSeconds = round((Date.now() - benchStarted) / 1000, 0);

  const rows = summarize(runs);
  const mismatches = runs.filter((r) => r.grandchild && !answerOk(r)).length;
  const table = await writeResults('branch', machineSummary(manifest.machine.accel), rows, {
    snapshot: TAG,
    guestMemoryMib: manifest.machine.memoryMib,
    branchesPerWorkload: BRANCHES,
    retouch: RETOUCH,
    runSeconds,
    grandchildMismatches: mismatches,
    runs,
  });
  log(`run time ${runSeconds} s`);
  log('\n' + table);
}

const expectedElements = (mib: number) => (mib * 2 ** 20) / 8;
const answerOk = (r: BranchRun) => r.grandchildAnswer === expectedElements(r.workloadMib);

async function workload(
  engine: Engine,
  mib: number,
  res: Resources,
  log: (s: string) => void,
): Promise<BranchRun[]> {
  const runs: BranchRun[] = [];
  const source = await forkOne(engine, TAG);
  res.sandboxes.add(source);
  const qmp = source.vmHandle.qmp;
  const tracer = traceQmp(qmp);
  try {
    const elements = expectedElements(mib);
    let t = Date.now();
    await evalOk(source, `ballast = numpy.ones(${elements})`);
    log(`workload ~${mib} MiB: ballast of ${elements} float64 touched in ${Date.now() - t} ms`);
    for (let i = 0; i < BRANCHES; i++) {
      if (i > 0) await evalOk(source, RETOUCH); // fresh dirty pages for this branch
      const tag = `${TAG_PREFIX}${mib}-${i}`;
      tracer.reset();
      const started = nowMs();
      res.tags.add(tag);
      const branch = await engine.branch(source, { tag });
      const traced = { events: [...tracer.trace.events], commands: [...tracer.trace.commands] };
      type MigrateInfo = { downtime?: number };
      const info = await qmp.execute<MigrateInfo>('query-migrate').catch((): MigrateInfo => ({}));
      const pause = breakdown(traced, info.downtime ?? null);
      const diskChainDepth = await backingDepth(qmp);

      const run: BranchRun = {
        workloadMib: mib,
        index: i,
        tag,
        ...branch.timings,
        diskChainDepth,
        memoryPhysicalMib: round(branch.manifest.memory.physicalBytes / 2 ** 20, 1),
        pause,
        grandchild: (i + 1) % GRANDCHILD_EVERY === 0,
        toGrandchildMs: null,
        grandchildForkMs: null,
        grandchildEvalMs: null,
        grandchildAnswer: null,
      };
      if (run.grandchild) {
        t = nowMs();
        const grandchild = await forkOne(engine, tag);
        res.sandboxes.add(grandchild);
        const forked = nowMs();
        try {
          const r = await grandchild.agent.eval('ballast.size', { timeoutMs: EVAL_TIMEOUT_MS });
          const answered = nowMs();
          run.toGrandchildMs = round(answered - started, 0);
          run.grandchildForkMs = round(forked - t, 0);
          run.grandchildEvalMs = round(answered - forked, 0);
          run.grandchildAnswer = r.error ?? r.result;
        } catch (err) {
          run.grandchildAnswer = `eval failed: ${errorMessage(err)}`;
        } finally {
          await res.kill(grandchild);
        }
      }
      runs.push(run);
      await res.removeTag(tag);
      log(
        `  ${tag}: pause ${run.pauseMs} ms (qemu downtime ${pause.qemuDowntime ?? '?'} ms, ` +
          `${pause.passes} passes; query-block ${pause.queryBlock}, snapshot-sync ${pause.blockdevSnapshotSync}, ` +
          `cont→RESUME ${pause.contToResume} ms; chain ${diskChainDepth}), ` +
          `copy ${run.migrateMs} ms, total ${run.totalMs} ms, ` +
          `RAM file ${run.memoryPhysicalMib} MiB` +
          (!run.grandchild
            ? ''
            : `; grandchild answered ${JSON.stringify(run.grandchildAnswer)} ${run.toGrandchildMs} ms after the branch started` +
              (answerOk(run) ? '' : ` (expected ${elements})`)),
      );
    }
  } finally {
    tracer.stop();
    await res.kill(source);
  }
  return runs;
}

function summarize(runs: BranchRun[]): BenchRow[] {
  const rows: BenchRow[] = [];
  const p = (values: (number | null)[], q: number) => {
    const present = values.filter((v): v is number => v !== null);
    return present.length ? round(percentile(present, q), 1) : NaN;
  };
  for (const mib of WORKLOADS_MIB) {
    const mine = runs.filter((r) => r.workloadMib === mib);
    const n = mine.length;
    const pick = (f: (r: BranchRun) => number | null) => mine.map(f);
    const pauseP50 = p(
      pick((r) => r.pauseMs),
      50,
    );
    rows.push({
      metric: `~${mib} MiB: source pause (STOP→RESUME) p50`,
      value: pauseP50,
      unit: 'ms',
      target: `≤ ${PAUSE_TARGET_MS} ms`,
      met: pauseP50 <= PAUSE_TARGET_MS,
      note: `${n} branches; Firecracker forkd live mode: ${FIRECRACKER_PAUSE_MS} ms p50 on a 1.5 GiB source`,
    });
    rows.push({
      metric: `~${mib} MiB: source pause p90`,
      value: p(
        pick((r) => r.pauseMs),
        90,
      ),
      unit: 'ms',
    });
    const first = mine.slice(0, 5);
    const last = mine.slice(-5);
    rows.push({
      metric: `~${mib} MiB: pause p50, first 5 branches → last 5`,
      value: p(
        last.map((r) => r.pauseMs),
        50,
      ),
      unit: 'ms',
      note: `first 5: ${p(
        first.map((r) => r.pauseMs),
        50,
      )} ms; the source's disk chain, first → last branch: ${first[0]?.diskChainDepth ?? '?'} → ${
        last.at(-1)?.diskChainDepth ?? '?'
      } backing files`,
    });
    const parts: [string, (r: BranchRun) => number | null][] = [
      [
        'STOP → migration completed (vm_stop flush, last RAM round, device state, disk inactivation)',
        (r) => r.pause.stopToCompleted,
      ],
      ['migration completed → forkd acts', (r) => r.pause.completedToNextCommand],
      ['query-block round trip (0: looked up before the copy)', (r) => r.pause.queryBlock],
      ['blockdev-snapshot-sync round trip', (r) => r.pause.blockdevSnapshotSync],
      ['cont sent → RESUME event (disk reactivation, vCPUs restart)', (r) => r.pause.contToResume],
    ];
    for (const [what, f] of parts) {
      rows.push({
        metric: `~${mib} MiB: pause part p50: ${what}`,
        value: p(pick(f), 50),
        unit: 'ms',
        note: `p90 ${p(pick(f), 90)} ms`,
      });
    }
    rows.push({
      metric: `~${mib} MiB: QEMU's own downtime p50 (query-migrate; ends at "completed")`,
      value: p(
        pick((r) => r.pause.qemuDowntime),
        50,
      ),
      unit: 'ms',
    });
    rows.push({
      metric: `~${mib} MiB: whole branch p50`,
      value: p(
        pick((r) => r.totalMs),
        50,
      ),
      unit: 'ms',
      note: `finish (disk flatten + device state, after resume) p50 ${p(
        pick((r) => r.finishMs),
        50,
      )} ms`,
    });
    rows.push({
      metric: `~${mib} MiB: whole branch p90`,
      value: p(
        pick((r) => r.totalMs),
        90,
      ),
      unit: 'ms',
    });
    rows.push({
      metric: `~${mib} MiB: live copy (migrate) p50`,
      value: p(
        pick((r) => r.migrateMs),
        50,
      ),
      unit: 'ms',
      note: `p50 ${p(
        pick((r) => r.pause.passes),
        50,
      )} dirty passes`,
    });
    rows.push({
      metric: `~${mib} MiB: branch RAM file physical size p50`,
      value: p(
        pick((r) => r.memoryPhysicalMib),
        50,
      ),
      unit: 'MiB',
    });
    const timed = mine.filter((r) => r.toGrandchildMs !== null);
    rows.push({
      metric: `~${mib} MiB: branch start → grandchild answering p50`,
      value: p(
        timed.map((r) => r.toGrandchildMs),
        50,
      ),
      unit: 'ms',
      note: `${timed.length} samples, every ${GRANDCHILD_EVERY}th branch; fork p50 ${p(
        timed.map((r) => r.grandchildForkMs),
        50,
      )} ms + eval p50 ${p(
        timed.map((r) => r.grandchildEvalMs),
        50,
      )} ms after the branch`,
    });
  }
  const checked = runs.filter((r) => r.grandchild);
  const wrong = checked.filter((r) => !answerOk(r)).length;
  rows.push({
    metric: 'grandchildren whose ballast.size was not the expected count',
    value: wrong,
    unit: `of ${checked.length}`,
    target: '0',
    met: wrong === 0,
  });
  return rows;
}
