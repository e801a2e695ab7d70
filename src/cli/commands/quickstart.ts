// `forkd quickstart`: the whole idea in one command. Build the python-numpy
// image if missing, snapshot a warm parent if missing, fork 10 children and
// eval numpy in each, then print what it cost.
import type { Command } from 'commander';
import { errorMessage } from '../../errors.js';
import { makeContext, type GlobalOptions } from '../context.js';
import { percentile, table } from '../output.js';

const TAG = 'python-numpy';
const CODE = 'import os; (numpy.arange(5) * 2).tolist(), os.getpid(), int.from_bytes(os.urandom(4), "big")';

export function registerQuickstart(program: Command): void {
  program
    .command('quickstart')
    .description(
      'build python-numpy (if missing), snapshot a warm parent, fork 10 children and eval numpy in each',
    )
    .option('-n, --n <count>', 'children to fork', (v) => Number(v), 10)
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions & { n: number }>();
      const { engine, out } = makeContext(opts);
      const existing = (await engine.store.list()).find((r) => r.tag === TAG);
      if (existing?.manifest?.status === 'ready') {
        out.progress(`snapshot ${TAG} exists; reusing it (remove it with \`forkd rmi ${TAG}\` to rebuild)`);
      } else {
        if (existing) await engine.store.remove(TAG);
        out.progress(
          `creating snapshot ${TAG} (first run builds the image: debootstrap + numpy, a few minutes)`,
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
              r.error === null
                ? JSON.stringify(r.result ?? r.repr)
                : (r.error.trim().split('\n').pop() ?? ''),
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
      const summary = { n: opts.n, ok, restore_wall_ms: restore.wallMs, eval_p50_ms: percentile(evalMs, 50) };
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
