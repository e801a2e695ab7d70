// `forkd fork`: restore N children from a snapshot, optionally run one
// command or eval in each, print per-phase timings (or one JSON object).
import type { Command } from 'commander';
import type { ChildResult, EgressPolicy, Sandbox } from '../../engine/index.js';
import { errorMessage } from '../../errors.js';
import { assertValidTag } from '../../snapshot/tag.js';
import {
  addQuotaOptions,
  limitsFromOptions,
  type QuotaOptions,
  EGRESS_HELP,
  egressFrom,
  egressOption,
  intOption,
  makeContext,
  type GlobalOptions,
} from '../context.js';
import { percentile, table } from '../output.js';

interface ForkOptions extends GlobalOptions, QuotaOptions {
  tag: string;
  n: number;
  exec?: string;
  eval?: string;
  hold?: boolean;
  egress?: EgressPolicy | boolean;
  memoryLimitMib?: number;
  timeoutSecs: number;
}

export interface ChildReport {
  id: string | null;
  ok: boolean;
  stdout?: string;
  stderr?: string;
  exit_code?: number;
  result?: unknown;
  error?: string;
}

export function registerFork(program: Command): void {
  addQuotaOptions(program.command('fork'))
    .description('restore N warm children from a snapshot; optionally run a command or eval code in each')
    .requiredOption('-t, --tag <tag>', 'snapshot to fork from')
    .option('-n, --n <count>', 'number of children (1-1000)', intOption('-n', 1, 1000), 1)
    .option('--exec <cmd>', 'shell command to run in every child')
    .option('--eval <code>', 'code to evaluate in every child’s warm runtime')
    .option('--hold', 'leave the children running (stop them with `forkd cleanup --all`)')
    .option('--egress <policy>', EGRESS_HELP, egressOption)
    .option('--no-egress', 'the same as --egress none (the default)')
    .option(
      '--memory-limit-mib <mib>',
      'per-child memory limit (cgroup)',
      intOption('--memory-limit-mib', 16, 1 << 20),
    )
    .option(
      '--timeout-secs <s>',
      'per-child limit for --exec/--eval',
      intOption('--timeout-secs', 1, 3600),
      60,
    )
    .addHelpText(
      'after',
      '\nExamples:\n  forkd fork -t python-numpy -n 10 --eval "numpy.zeros(5).tolist()"\n  forkd fork -t tiny -n 100 --exec "cat /proc/uptime" --json',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<ForkOptions>();
      if (opts.exec !== undefined && opts.eval !== undefined)
        throw new Error('use either --exec or --eval, not both');
      process.exitCode = await runFork(opts);
    });
}

async function runFork(opts: ForkOptions): Promise<number> {
  const { engine, out } = makeContext(opts);
  assertValidTag(opts.tag);
  out.progress(`forking ${opts.n} ${opts.n === 1 ? 'child' : 'children'} from ${opts.tag}`);
  const restore = await engine.fork({
    tag: opts.tag,
    n: opts.n,
    egress: egressFrom(opts.egress),
    limits: limitsFromOptions(opts),
    detach: opts.hold ?? false,
  });
  const sandboxes = restore.children.filter((c): c is Extract<ChildResult, { ok: true }> => c.ok);
  out.progress(`${sandboxes.length}/${opts.n} children answering after ${restore.wallMs} ms`);

  const workStarted = Date.now();
  const reports = await Promise.all(restore.children.map((c) => runInChild(c, opts)));
  const workMs = Date.now() - workStarted;

  const teardownStarted = Date.now();
  await Promise.all(sandboxes.map((c) => (opts.hold ? c.sandbox.detach() : c.sandbox.kill())));
  const teardownMs = Date.now() - teardownStarted;

  const ok = reports.filter((r) => r.ok).length;
  const phaseP50 = {
    launch: percentile(
      sandboxes.map((c) => c.timings.launchMs),
      50,
    ),
    load: percentile(
      sandboxes.map((c) => c.timings.loadMs),
      50,
    ),
    agent: percentile(
      sandboxes.map((c) => c.timings.agentMs),
      50,
    ),
  };
  const totals = sandboxes.map((c) => c.timings.totalMs);
  out.result(
    {
      n: opts.n,
      ok,
      wall_ms: restore.wallMs + workMs,
      restore_ms: restore.wallMs,
      work_ms: workMs,
      teardown_ms: teardownMs,
      phases_p50_ms: phaseP50,
      held: opts.hold ?? false,
      children: reports,
    },
    () => {
      const rows = reports.map((r, i) => [String(i), r.id ?? '-', r.ok ? 'ok' : 'FAIL', summarise(r)]);
      const phases = [
        `restore: ${restore.wallMs} ms for ${opts.n} (per child p50 ${percentile(totals, 50)} ms, p90 ${percentile(totals, 90)} ms)`,
        `         per child p50: QEMU start ${phaseP50.launch} ms, device state ${phaseP50.load} ms, agent hand-over ${phaseP50.agent} ms`,
        opts.exec !== undefined || opts.eval !== undefined ? `work:    ${workMs} ms` : null,
        opts.hold ? `held:    ${sandboxes.length} children left running` : `teardown: ${teardownMs} ms`,
        `ok:      ${ok}/${opts.n}`,
      ].filter((l) => l !== null);
      return `${table(['#', 'SANDBOX', 'STATUS', 'OUTPUT'], rows)}\n\n${phases.join('\n')}`;
    },
  );
  return ok === opts.n ? 0 : 1;
}

function summarise(r: ChildReport): string {
  if (r.error) return r.error;
  const text = r.result !== undefined ? JSON.stringify(r.result) : (r.stdout ?? '').trim();
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > 60 ? `${oneLine.slice(0, 57)}...` : oneLine;
}

async function runInChild(child: ChildResult, opts: ForkOptions): Promise<ChildReport> {
  if (!child.ok) return { id: null, ok: false, error: errorMessage(child.error) };
  const sandbox: Sandbox = child.sandbox;
  const timeoutMs = opts.timeoutSecs * 1000;
  try {
    if (opts.exec !== undefined) {
      const r = await sandbox.agent.exec({ shell: opts.exec, timeoutMs }, undefined, {
        timeoutMs: timeoutMs + 5000,
      });
      const report: ChildReport = {
        id: sandbox.id,
        ok: r.exitCode === 0,
        stdout: r.stdout.toString('utf8'),
        stderr: r.stderr.toString('utf8'),
        exit_code: r.exitCode,
      };
      if (r.timedOut) report.error = `timed out after ${opts.timeoutSecs} s`;
      else if (r.exitCode !== 0) report.error = `exit code ${r.exitCode}`;
      return report;
    }
    if (opts.eval !== undefined) {
      const r = await sandbox.agent.eval(opts.eval, { timeoutMs });
      return r.error === null
        ? { id: sandbox.id, ok: true, result: r.result ?? r.repr }
        : { id: sandbox.id, ok: false, error: r.error.trim().split('\n').pop() ?? r.error };
    }
    await sandbox.agent.ping({ timeoutMs });
    return { id: sandbox.id, ok: true };
  } catch (err) {
    return { id: sandbox.id, ok: false, error: errorMessage(err) };
  }
}
