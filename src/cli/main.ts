#!/usr/bin/env node
// forkd's command line. Each command lives in commands/<name>.ts; this file
// wires them up and turns errors into one line on stderr (plus, with --json,
// `{error, code, status}` on stdout) and an exit code.
import { Command, CommanderError } from 'commander';
import { FORKD_VERSION } from '../version.js';
import { errorDocument, printError } from './output.js';
import { registerCleanup } from './commands/cleanup.js';
import { registerDoctor } from './commands/doctor.js';
import { registerFork } from './commands/fork.js';
import { registerImages } from './commands/images.js';
import { registerQuickstart } from './commands/quickstart.js';
import { registerRun } from './commands/run.js';
import { registerServe } from './commands/serve.js';
import { registerSpawn } from './commands/spawn.js';
import { registerLs } from './commands/ls.js';
import { registerTree } from './commands/tree.js';
import { registerKill } from './commands/kill.js';
import { registerSandboxIo } from './commands/sandbox-io.js';
import { registerMcp } from './commands/mcp.js';
import { registerSnapshot } from './commands/snapshot.js';
import { registerPack } from './commands/pack.js';
import { registerKeygen } from './commands/keygen.js';
import { registerPull } from './commands/pull.js';
import { registerHub } from './commands/hub.js';
import { registerBranch } from './commands/branch.js';
import { registerWorkspace } from './commands/workspace.js';
import { registerE2bCommand } from './commands/e2b.js';

const program = new Command()
  .name('forkd')
  .description('Fork warmed QEMU microVMs copy-on-write, the way fork(2) forks processes.')
  .option('--data-dir <dir>', 'state directory (env FORKD_DATA_DIR; default ~/.local/share/forkd)')
  .option('--accel <accel>', 'accelerator: auto (probe KVM, fall back to TCG), kvm or tcg', 'auto')
  .option('--json', 'print one JSON document on stdout; a failure prints {error, code, status}')
  .option('-q, --quiet', 'no progress lines on stderr')
  .configureOutput({
    // Usage errors: one line, with the way to more help in it.
    outputError: (message, write) => write(`forkd: ${message.trim()} (see --help)\n`),
  })
  .addHelpText('after', '\nforkd --version (or -V) prints the version.')
  .exitOverride();

// Not commander's .version(): a root option is matched anywhere on the line,
// and `forkd hub publish --version 1` needs --version for itself.
if (process.argv[2] === '--version' || process.argv[2] === '-V') {
  process.stdout.write(`${FORKD_VERSION}\n`);
  process.exit(0);
}

registerDoctor(program);
registerImages(program);
registerSnapshot(program);
registerFork(program);
registerRun(program);
registerCleanup(program);
registerQuickstart(program);
registerServe(program);
registerSpawn(program);
registerLs(program);
registerTree(program);
registerKill(program);
registerSandboxIo(program);
registerMcp(program);
registerPack(program);
registerKeygen(program);
registerPull(program);
registerHub(program);
registerBranch(program);
registerWorkspace(program);
registerE2bCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  const json = program.opts<{ json?: boolean }>().json ?? false;
  if (err instanceof CommanderError) {
    // Commander already printed its message (or the help/version text); usage errors exit 2.
    process.exitCode = err.exitCode === 0 ? 0 : 2;
    if (err.exitCode !== 0) printError(err, json);
  } else {
    printError(err, json);
    if (process.env.FORKD_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    // Bad input exits 2 whether the engine or a daemon refused it.
    process.exitCode = errorDocument(err).code === 'invalid_argument' ? 2 : 1;
  }
}
