// `forkd spawn`: ask the daemon for N sandboxes from a snapshot.
import type { Command } from 'commander';
import { formatEgress, type EgressPolicy } from '../../engine/index.js';
import {
  addQuotaOptions,
  EGRESS_HELP,
  egressOption,
  intOption,
  quotaParams,
  type QuotaOptions,
} from '../context.js';
import { createPrinter, table } from '../output.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

export function registerSpawn(program: Command): void {
  withRemoteOptions(
    addQuotaOptions(program.command('spawn'))
      .description('create sandboxes through the daemon (forkd serve)')
      .requiredOption('-t, --tag <tag>', 'snapshot to fork from')
      .option('-n, --n <count>', 'number of sandboxes (1-1000)', intOption('-n', 1, 1000), 1)
      .option(
        '--memory-limit-mib <mib>',
        'per-sandbox memory limit',
        intOption('--memory-limit-mib', 16, 1 << 20),
      )
      .option('--prewarm', 'take sandboxes from the daemon’s warm pool first')
      .option('--egress <policy>', EGRESS_HELP, egressOption),
  ).action(async (_o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<
      RemoteOptions &
        QuotaOptions & {
          tag: string;
          n: number;
          memoryLimitMib?: number;
          prewarm?: boolean;
          egress?: EgressPolicy;
        }
    >();
    const out = createPrinter({ json: opts.json ?? false });
    const created = await controllerFrom(opts).createSandboxes({
      snapshotTag: opts.tag,
      n: opts.n,
      memoryLimitMib: opts.memoryLimitMib,
      prewarm: opts.prewarm,
      egress: opts.egress ? formatEgress(opts.egress) : undefined,
      ...quotaParams(opts),
    });
    out.result(created, () =>
      table(
        ['SANDBOX', 'SNAPSHOT', 'PID'],
        created.map((s) => [s.id, s.snapshot_tag, String(s.pid ?? '-')]),
      ),
    );
  });
}
