// `forkd workspace create|suspend|resume|list|delete`: named sandboxes that
// can be put away (their state saved by a live branch) and picked up again.
import type { Command } from 'commander';
import type { WorkspaceInfo } from '../../sdk/index.js';
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

function describe(w: WorkspaceInfo): string {
  const where = w.live_sandbox_id
    ? `sandbox ${w.live_sandbox_id}`
    : w.current_state_tag
      ? `state ${w.current_state_tag}`
      : '';
  return `workspace ${w.name}: ${w.status}${where ? ` (${where})` : ''}`;
}

export function registerWorkspace(program: Command): void {
  const ws = program
    .command('workspace')
    .description('named sandboxes that suspend (state saved) and resume (through the daemon)');
  withRemoteOptions(
    addQuotaOptions(ws.command('create'))
      .description('fork a named sandbox from a snapshot')
      .argument('<name>', 'workspace name (A-Z a-z 0-9 _ -)')
      .requiredOption('-t, --tag <tag>', 'snapshot to start from')
      .option(
        '--memory-limit-mib <mib>',
        'cap its host memory (kept across resumes)',
        intOption('--memory-limit-mib', 16, 1 << 20),
      )
      .option('--egress <policy>', `${EGRESS_HELP} (kept across resumes)`, egressOption),
  ).action(async (name: string, _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<RemoteOptions & QuotaOptions & { tag: string; egress?: EgressPolicy }>();
    const w = await controllerFrom(opts).createWorkspace({
      name,
      snapshotTag: opts.tag,
      memoryLimitMib: opts.memoryLimitMib,
      egress: opts.egress ? formatEgress(opts.egress) : undefined,
      ...quotaParams(opts),
    });
    createPrinter({ json: opts.json ?? false }).result(w, () => describe(w));
  });
  for (const [verb, help] of [
    ['suspend', 'save its state (a live branch) and stop its sandbox'],
    ['resume', 'start a sandbox from its saved state'],
  ] as const) {
    withRemoteOptions(ws.command(verb).description(help).argument('<name>', 'workspace name')).action(
      async (name: string, _o: unknown, cmd: Command) => {
        const opts = cmd.optsWithGlobals<RemoteOptions>();
        const controller = controllerFrom(opts);
        const w =
          verb === 'suspend'
            ? await controller.suspendWorkspace(name)
            : await controller.resumeWorkspace(name);
        createPrinter({ json: opts.json ?? false }).result(w, () => describe(w));
      },
    );
  }
  withRemoteOptions(ws.command('list').description('list workspaces')).action(
    async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<RemoteOptions>();
      const all = await controllerFrom(opts).listWorkspaces();
      createPrinter({ json: opts.json ?? false }).result(all, () =>
        all.length
          ? table(
              ['NAME', 'STATUS', 'SANDBOX', 'STATE', 'FROM'],
              all.map((w) => [
                w.name,
                w.status,
                w.live_sandbox_id ?? '-',
                w.current_state_tag ?? '-',
                w.source_snapshot_tag,
              ]),
            )
          : 'no workspaces (`forkd workspace create NAME --tag T`)',
      );
    },
  );
  withRemoteOptions(
    ws
      .command('delete')
      .description('stop its sandbox and remove its saved state (never the snapshot it came from)')
      .argument('<name>', 'workspace name'),
  ).action(async (name: string, _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<RemoteOptions>();
    await controllerFrom(opts).deleteWorkspace(name);
    createPrinter({ json: opts.json ?? false }).result({ deleted: name }, () => `deleted workspace ${name}`);
  });
}
