// `forkd tree`: the daemon's snapshots as a tree (each under the one it was
// branched or forked from) with the sandboxes running from each.
import type { Command } from 'commander';
import { renderSnapshotTree, treeFromFlat } from '../../snapshot/tree.js';
import { createPrinter } from '../output.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

export function registerTree(program: Command): void {
  withRemoteOptions(
    program
      .command('tree')
      .description('show snapshots under the ones they were branched from, with their running sandboxes')
      .addHelpText(
        'after',
        '\nEach line is a snapshot (its size on disk; how it came to be); ● lines are sandboxes\nrunning from it. --json gives the flat list GET /v1/tree answers.',
      ),
  ).action(async (_o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<RemoteOptions>();
    const out = createPrinter({ json: opts.json ?? false });
    const tree = await controllerFrom(opts).tree();
    out.result(tree, () =>
      tree.snapshots.length ? renderSnapshotTree(treeFromFlat(tree.snapshots)).join('\n') : 'no snapshots',
    );
  });
}
