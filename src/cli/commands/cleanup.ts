// `forkd cleanup`: remove leftovers of crashed or interrupted runs.
import type { Command } from 'commander';
import { makeContext, type GlobalOptions } from '../context.js';

export function registerCleanup(program: Command): void {
  program
    .command('cleanup')
    .description('remove run dirs of dead VMs, abandoned half-written snapshots and empty cgroups')
    .option('--all', 'also stop running (held) sandboxes')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions & { all?: boolean }>();
      const { engine, out } = makeContext(opts);
      const report = await engine.cleanup({ killRunning: opts.all ?? false });
      out.result(report, () =>
        [
          `stopped ${report.killedVms.length} running VMs`,
          `removed ${report.removedRunDirs.length} run dirs, ${report.removedSnapshots.length} abandoned snapshots, ${report.removedStaging.length} unfinished unpacks, ${report.removedCgroups.length} cgroups`,
          report.runningVms.length
            ? `${report.runningVms.length} VMs still running (use --all to stop them)`
            : '',
        ]
          .filter(Boolean)
          .join('\n'),
      );
    });
}
