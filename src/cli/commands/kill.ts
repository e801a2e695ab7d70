// `forkd kill`: stop sandboxes through the daemon, by id, by snapshot, or all.
import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { createPrinter } from '../output.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

export function registerKill(program: Command): void {
  withRemoteOptions(
    program
      .command('kill')
      .description('stop sandboxes (by id, --tag, or --all)')
      .argument('[ids...]', 'sandbox ids')
      .option('--all', 'every sandbox')
      .option('-t, --tag <tag>', 'every sandbox forked from this snapshot'),
  ).action(async (ids: string[], _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<RemoteOptions & { all?: boolean; tag?: string }>();
    if (!ids.length && !opts.all && !opts.tag) {
      throw new InvalidArgumentError('name sandbox ids, or use --all or --tag', 'ids');
    }
    const out = createPrinter({ json: opts.json ?? false });
    const controller = controllerFrom(opts);
    const targets = ids.length
      ? ids
      : (await controller.listSandboxes())
          .filter((s) => opts.all || s.snapshot_tag === opts.tag)
          .map((s) => s.id);
    await Promise.all(targets.map((id) => controller.deleteSandbox(id)));
    out.result({ killed: targets }, () => `killed ${targets.length} sandboxes`);
  });
}
