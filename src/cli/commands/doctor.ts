// `forkd doctor`: check the host, one line per check with a hint.
import type { Command } from 'commander';
import { runDoctor } from '../../engine/doctor.js';
import { makeContext, type GlobalOptions } from '../context.js';

const MARK = { pass: 'ok  ', warn: 'warn', fail: 'FAIL' } as const;

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check that this host can run forkd (QEMU, KVM or TCG, tools, cgroups, data dir)')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const { engine, out } = makeContext(opts);
      const checks = await runDoctor(engine);
      const failed = checks.filter((c) => c.status === 'fail').length;
      out.result({ ok: failed === 0, checks }, () =>
        checks
          .map(
            (c) =>
              `${MARK[c.status]}  ${c.name.padEnd(16)} ${c.detail}${c.hint && c.status !== 'pass' ? `\n      → ${c.hint}` : ''}`,
          )
          .join('\n'),
      );
      if (failed) process.exitCode = 1;
    });
}
