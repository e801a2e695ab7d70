// `forkd ls`: the daemon's running sandboxes.
import type { Command } from 'commander';
import { createPrinter, table } from '../output.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

export function registerLs(program: Command): void {
  withRemoteOptions(program.command('ls').description('list the daemon’s sandboxes')).action(
    async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<RemoteOptions>();
      const out = createPrinter({ json: opts.json ?? false });
      const sandboxes = await controllerFrom(opts).listSandboxes();
      out.result(sandboxes, () =>
        sandboxes.length
          ? table(
              ['SANDBOX', 'SNAPSHOT', 'PID', 'MEMORY LIMIT', 'CREATED'],
              sandboxes.map((s) => [
                s.id,
                s.snapshot_tag,
                String(s.pid ?? '-'),
                s.memory_limit_mib ? `${s.memory_limit_mib} MiB` : '-',
                new Date(s.created_at_unix * 1000).toISOString(),
              ]),
            )
          : 'no sandboxes',
      );
    },
  );
}
