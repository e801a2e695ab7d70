// `forkd branch`: snapshot a running sandbox (through the daemon) into a new
// tag while it keeps running; fork that tag to continue from this moment.
import type { Command } from 'commander';
import { createPrinter } from '../output.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

interface BranchCliOptions extends RemoteOptions {
  sandbox: string;
  tag?: string;
  wait: boolean;
}

export function registerBranch(program: Command): void {
  withRemoteOptions(
    program
      .command('branch')
      .description('snapshot a running sandbox into a new tag while it keeps running (live branch)')
      .requiredOption('--sandbox <id>', 'the sandbox to branch (see `forkd ls`)')
      .option('--tag <tag>', 'tag of the new snapshot (default: <snapshot>-br-<random>)')
      .option('--no-wait', 'return at once (status "writing"); `forkd images` shows when it is ready'),
  ).action(async (_o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<BranchCliOptions>();
    const out = createPrinter({ json: opts.json ?? false, quiet: opts.quiet ?? false });
    const info = await controllerFrom(opts).branch(opts.sandbox, { tag: opts.tag, wait: opts.wait });
    out.result(info, () =>
      info.status === 'writing'
        ? `branching ${opts.sandbox} into ${info.tag} (writing; it keeps running)`
        : `branched ${opts.sandbox} into ${info.tag}: paused ${info.pause_ms ?? '?'} ms; fork it with \`forkd spawn --tag ${info.tag}\``,
    );
  });
}
