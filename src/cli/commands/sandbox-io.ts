// `forkd exec|eval|ping --sandbox ID`: one call into a daemon sandbox.
import type { Command } from 'commander';
import { intOption } from '../context.js';
import { createPrinter } from '../output.js';
import { errorFromEvent } from '../../sdk/index.js';
import { controllerFrom, withRemoteOptions, type RemoteOptions } from '../remote.js';

interface SandboxOptions extends RemoteOptions {
  sandbox: string;
  timeoutSecs: number;
}

export function registerSandboxIo(program: Command): void {
  withRemoteOptions(
    program
      .command('exec')
      .description('run a command in a daemon sandbox, streaming its output; exits with its exit code')
      .requiredOption('-s, --sandbox <id>', 'sandbox id (forkd ls)')
      .option(
        '--timeout-secs <s>',
        'kill the command after this long',
        intOption('--timeout-secs', 1, 3600),
        60,
      )
      .argument('<command...>', 'the command and its arguments (after --)'),
  ).action(async (command: string[], _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<SandboxOptions>();
    const controller = controllerFrom(opts);
    const events = await controller.runCommand(opts.sandbox, {
      args: command,
      timeoutSecs: opts.timeoutSecs,
    });
    for await (const event of events) {
      if (event.type === 'stdout') process.stdout.write(event.data);
      else if (event.type === 'stderr') process.stderr.write(event.data);
      else if (event.type === 'exit') process.exitCode = event.exit_code;
      // The same error class and code the API would have answered with.
      else if (event.type === 'error')
        throw errorFromEvent(event, `${controller.url}/v1/sandboxes/${opts.sandbox}`);
    }
  });

  withRemoteOptions(
    program
      .command('eval')
      .description('evaluate code in a daemon sandbox’s warm runtime and print the value')
      .requiredOption('-s, --sandbox <id>', 'sandbox id (forkd ls)')
      .argument('<code>', 'code; the value of its last expression is printed'),
  ).action(async (code: string, _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<SandboxOptions>();
    const out = createPrinter({ json: opts.json ?? false });
    const r = await controllerFrom(opts).eval(opts.sandbox, code);
    // The repr, as Python prints it.
    out.result(r, () => (r.error !== null ? r.error : (r.result ?? '')));
    if (r.exit_code !== 0) process.exitCode = 1;
  });

  withRemoteOptions(
    program
      .command('ping')
      .description('check that a daemon sandbox’s agent answers')
      .requiredOption('-s, --sandbox <id>', 'sandbox id (forkd ls)'),
  ).action(async (_o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<SandboxOptions>();
    const out = createPrinter({ json: opts.json ?? false });
    const r = await controllerFrom(opts).ping(opts.sandbox);
    out.result(
      r,
      () =>
        `pong from ${opts.sandbox} (agent ${r.agent_version ?? '?'}, up ${Math.round(r.uptime_ms ?? 0)} ms)`,
    );
  });
}
