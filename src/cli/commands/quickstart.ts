// `forkd quickstart`: the whole idea in one command. Get a warm python-numpy
// parent (pulled from a hub when one is configured and reachable, otherwise
// built here: bootstrap, boot, warm-up), fork 10 children, eval numpy in
// each, and print what it cost.
import type { Command } from 'commander';
import { interruptible } from '../../util/cleanup.js';
import { errorMessage } from '../../errors.js';
import type { Engine } from '../../engine/index.js';
import {
  addTrustOptions,
  hubUrl,
  makeContext,
  trustFromOptions,
  type GlobalOptions,
  type TrustOptions,
} from '../context.js';
import type { TrustPolicy } from '../../hub/signing.js';
import { percentile, table, type Printer } from '../output.js';
import { transferProgress } from '../transfer-progress.js';

const DEFAULT_PACKAGE = 'forkd/python-numpy';

const TAG = 'python-numpy';
const CODE = 'import os; (numpy.arange(5) * 2).tolist(), os.getpid(), int.from_bytes(os.urandom(4), "big")';

export function registerQuickstart(program: Command): void {
  const quickstart = program
    .command('quickstart')
    .description('pull (or build) a warm python-numpy parent, fork 10 children and eval numpy in each')
    .option('-n, --n <count>', 'children to fork', (v) => Number(v), 10)
    .option('--hub <url>', 'hub to pull the parent from (env FORKD_HUB_URL); without one it is built here')
    .option('--package <owner/name>', 'package to pull', DEFAULT_PACKAGE);
  addTrustOptions(quickstart).action(async (_o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<
      GlobalOptions & TrustOptions & { n: number; hub?: string; package: string }
    >();
    const { engine, out } = makeContext(opts);
    const trust = await trustFromOptions(engine, opts);
    const existing = (await engine.store.list()).find((r) => r.tag === TAG);
    let source: 'existing' | 'pulled' | 'built' = 'existing';
    if (existing?.manifest?.status === 'ready') {
      out.progress(`snapshot ${TAG} exists; reusing it (remove it with \`forkd rmi ${TAG}\` to rebuild)`);
    } else if (
      existing === undefined &&
      (await pullParent(engine, out, hubUrl(opts.hub), opts.package, trust))
    ) {
      source = 'pulled';
    } else {
      source = 'built';
      if (existing) await engine.store.remove(TAG);
      out.progress(
        `creating snapshot ${TAG} (first run builds the image: mmdebstrap + numpy, a few minutes)`,
      );
      const manifest = await engine.createSnapshot({
        tag: TAG,
        recipe: 'python-numpy',
        onProgress: (step) => out.progress(step),
        onImageProgress: (e) => out.progress(`image: ${e.step}${e.detail ? `: ${e.detail}` : ''}`),
      });
      out.progress(
        `parent warm after ${manifest.timings.bootToReadyMs} ms, frozen in ${manifest.timings.freezeMs} ms`,
      );
    }
    out.progress(`forking ${opts.n} children`);
    const restore = await engine.fork({ tag: TAG, n: opts.n });
    const rows: string[][] = [];
    const evalMs: number[] = [];
    let ok = 0;
    await Promise.all(
      restore.children.map(async (child) => {
        if (!child.ok) {
          rows[child.index] = [String(child.index), '-', 'FAIL', '-', errorMessage(child.error)];
          return;
        }
        const t = Date.now();
        try {
          const r = await child.sandbox.agent.eval(CODE, { timeoutMs: 30_000 });
          const ms = Date.now() - t;
          evalMs.push(ms);
          if (r.error === null) ok++;
          rows[child.index] = [
            String(child.index),
            child.sandbox.id,
            `${child.timings.totalMs} ms`,
            `${ms} ms`,
            r.error === null ? JSON.stringify(r.result ?? r.repr) : (r.error.trim().split('\n').pop() ?? ''),
          ];
        } catch (err) {
          rows[child.index] = [
            String(child.index),
            child.sandbox.id,
            `${child.timings.totalMs} ms`,
            '-',
            errorMessage(err),
          ];
        } finally {
          await child.sandbox.kill();
        }
      }),
    );
    const summary = {
      n: opts.n,
      ok,
      parent: source,
      restore_wall_ms: restore.wallMs,
      eval_p50_ms: percentile(evalMs, 50),
    };
    out.result(summary, () =>
      [
        table(['#', 'SANDBOX', 'RESTORE', 'EVAL', 'RESULT ([numpy], pid, urandom)'], rows),
        '',
        `${ok}/${opts.n} children answered; all ${opts.n} restored and answering in ${restore.wallMs} ms; first eval p50 ${summary.eval_p50_ms} ms`,
        'Same pid in every child: they are forks of one warm parent. Different urandom: each was reseeded.',
      ].join('\n'),
    );
    if (ok !== opts.n) process.exitCode = 1;
  });
}

/** Pull the parent from a hub; false (having said why) when there is none or it fails. */
async function pullParent(
  engine: Engine,
  out: Printer,
  hub: string | undefined,
  pkg: string,
  trust: TrustPolicy,
): Promise<boolean> {
  if (!hub) {
    out.progress(
      'no hub configured (set FORKD_HUB_URL or pass --hub to pull a ready parent): building locally',
    );
    return false;
  }
  out.progress(`pulling ${pkg} from ${hub}`);
  try {
    const pulled = await interruptible((signal) =>
      engine.pull({ ref: pkg, hub, tag: TAG, trust, onProgress: transferProgress(out), signal }),
    );
    out.progress(
      `pulled ${pkg}: ${pulled.downloadBytes} bytes in ${pulled.downloadMs} ms, unpacked and verified in ${pulled.unpackMs} ms`,
    );
    return true;
  } catch (err) {
    out.progress(`could not pull ${pkg} from ${hub}: ${errorMessage(err)}; building locally instead`);
    return false;
  }
}
