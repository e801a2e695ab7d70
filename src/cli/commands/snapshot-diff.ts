// `forkd snapshot diff`: a new snapshot as a diff link of another. Locally it
// forks the parent, applies the change (a shell command or Python code) and
// branches the child with diff: true; with --sandbox it asks the daemon to
// branch that running sandbox in diff mode.
import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { diffFromChange, type Engine, type SnapshotManifest } from '../../engine/index.js';
import { makeContext, type GlobalOptions } from '../context.js';
import { formatBytes, type Printer } from '../output.js';
import { controllerFrom, type RemoteOptions } from '../remote.js';

interface DiffCliOptions extends GlobalOptions, RemoteOptions {
  from?: string;
  tag?: string;
  exec?: string;
  eval?: string;
  sandbox?: string;
}

export function registerSnapshotDiff(snapshot: Command): void {
  snapshot
    .command('diff')
    .description(
      'make --tag a diff of --from: only the RAM pages and disk clusters that differ are kept beside its flat files',
    )
    .option('--from <tag>', 'the parent snapshot (forked, changed, then branched)')
    .option('--exec <command>', 'the change: a shell command run in a child of --from (must exit 0)')
    .option('--eval <code>', "the change: Python code run in the child's warm runtime")
    .option('--sandbox <id>', 'the change is already made: branch this daemon sandbox (--url or FORKD_URL)')
    .addHelpText(
      'after',
      '\nThe new tag is `forkd snapshot diff --tag NEW …` (or `forkd snapshot -t NEW diff …`).',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<DiffCliOptions>();
      if (!opts.tag) throw new InvalidArgumentError('name the new snapshot with --tag', 'tag');
      const changes = [opts.exec, opts.eval, opts.sandbox].filter((c) => c !== undefined);
      if (changes.length !== 1) {
        throw new InvalidArgumentError('say what changed: one of --exec, --eval or --sandbox', 'exec');
      }
      const { engine, out } = makeContext(opts);
      if (opts.sandbox !== undefined) {
        const info = await controllerFrom(opts).branch(opts.sandbox, { tag: opts.tag, mode: 'diff' });
        out.result(info, () => `${info.tag}: a diff link of ${opts.sandbox}'s snapshot`);
        return;
      }
      if (!opts.from) throw new InvalidArgumentError('name the parent snapshot with --from', 'from');
      const manifest = await diffFromCliChange(engine, out, {
        from: opts.from,
        tag: opts.tag,
        change: opts.exec !== undefined ? { shell: opts.exec } : { code: opts.eval ?? '' },
      });
      out.result(manifest, () => describeLink(manifest));
    });
}

/** The CLI's change (one shell command or one piece of Python) as a diff link of `from`. */
async function diffFromCliChange(
  engine: Engine,
  out: Printer,
  req: { from: string; tag: string; change: { shell: string } | { code: string } },
): Promise<SnapshotManifest> {
  const change = req.change;
  const { manifest } = await diffFromChange(engine, {
    from: req.from,
    tag: req.tag,
    onProgress: (step) => out.progress(step),
    change: async (sandbox) => {
      if ('shell' in change) {
        out.progress(`running: ${change.shell}`);
        const r = await sandbox.agent.exec({ shell: change.shell, timeoutMs: 30 * 60_000 });
        if (r.exitCode !== 0) {
          throw new InvalidArgumentError(
            `the change exited ${r.exitCode}: ${r.stderr.toString().trim().split('\n').slice(-3).join(' | ')}`,
            'exec',
          );
        }
      } else {
        out.progress('evaluating the change');
        const r = await sandbox.agent.eval(change.code, { timeoutMs: 30 * 60_000 });
        if (r.error)
          throw new InvalidArgumentError(
            `the change raised: ${r.error.trim().split('\n').pop() ?? ''}`,
            'eval',
          );
      }
    },
  });
  return manifest;
}

function describeLink(m: SnapshotManifest): string {
  const d = m.diff;
  if (!d) return `${m.tag} ready`;
  const disk = d.disk ? `, disk ${formatBytes(d.disk.physicalBytes)}` : '';
  return `${m.tag}: a diff of ${m.parent?.tag ?? '?'}: RAM ${formatBytes(d.memory.physicalBytes)} (${d.memory.pages} pages)${disk}, made in ${d.ms} ms`;
}
