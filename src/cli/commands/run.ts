// `forkd run --tag T -- cmd args…`: fork one child, run the command with its
// output streamed, exit with the command's exit code.
import type { Command } from 'commander';
import type { EgressPolicy } from '../../engine/index.js';
import { errorMessage } from '../../errors.js';
import {
  addQuotaOptions,
  limitsFromOptions,
  type QuotaOptions,
  EGRESS_HELP,
  egressFrom,
  egressOption,
  intOption,
  makeContext,
  type GlobalOptions,
} from '../context.js';

interface RunOptions extends GlobalOptions, QuotaOptions {
  tag: string;
  egress?: EgressPolicy | boolean;
  timeoutSecs: number;
}

export function registerRun(program: Command): void {
  addQuotaOptions(program.command('run'))
    .description('fork one child, run a command in it, print its output and exit with its exit code')
    .requiredOption('-t, --tag <tag>', 'snapshot to fork from')
    .option('--egress <policy>', EGRESS_HELP, egressOption)
    .option('--no-egress', 'the same as --egress none (the default)')
    .option(
      '--timeout-secs <s>',
      'kill the command after this long',
      intOption('--timeout-secs', 1, 86400),
      300,
    )
    .argument('<command...>', 'the command and its arguments (put them after --)')
    .addHelpText(
      'after',
      '\nExample:\n  forkd run -t python-numpy -- python3 -c "import numpy; print(numpy.__version__)"',
    )
    .action(async (command: string[], _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<RunOptions>();
      const { engine, out } = makeContext({ ...opts, quiet: opts.quiet ?? !process.stderr.isTTY });
      const restore = await engine.fork({
        tag: opts.tag,
        n: 1,
        egress: egressFrom(opts.egress),
        limits: limitsFromOptions(opts),
      });
      const child = restore.children[0]!;
      if (!child.ok) throw child.error;
      out.progress(`child ${child.sandbox.id} answering after ${restore.wallMs} ms`);
      try {
        const result = await child.sandbox.agent.exec(
          { args: command, timeoutMs: opts.timeoutSecs * 1000 },
          { onStdout: (c) => process.stdout.write(c), onStderr: (c) => process.stderr.write(c) },
        );
        if (result.timedOut) process.stderr.write(`forkd: command timed out after ${opts.timeoutSecs} s\n`);
        process.exitCode = result.exitCode;
      } catch (err) {
        process.stderr.write(`forkd: error: ${errorMessage(err)}\n`);
        process.exitCode = 1;
      } finally {
        await child.sandbox.kill();
      }
    });
}
