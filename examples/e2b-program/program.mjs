// A program written for E2B, with nothing forkd-specific in it: the kind of
// code an agent builder already has. Run it against forkd with
//   eval "$(forkd e2b env)" && node examples/e2b-program/program.mjs
// It creates a code-interpreter sandbox (E2B's default template), runs a
// command, writes and reads files, keeps Python state across runCode calls,
// forks the sandbox two ways and checks each fork kept that state, then
// kills everything. It prints one JSON line with what it saw.
import { Sandbox } from '@e2b/code-interpreter';

const sandbox = await Sandbox.create({ timeoutMs: 10 * 60_000, requestTimeoutMs: 300_000 });
const seen = { sandboxId: sandbox.sandboxId };
try {
  seen.uname = (await sandbox.commands.run('uname -s')).stdout.trim();
  await sandbox.files.write('data/numbers.txt', '1 2 3 4\n');
  seen.file = await sandbox.files.read('data/numbers.txt');
  await sandbox.runCode('import numpy as np\nx = np.array([1, 2, 3, 4])');
  const mean = await sandbox.runCode('print("mean is", x.mean())\nx.sum()');
  seen.stdout = mean.logs.stdout.join('');
  seen.sum = mean.text;
  const failed = await sandbox.runCode('1 / 0');
  seen.error = failed.error ? `${failed.error.name}: ${failed.error.value}` : null;
  const forks = await sandbox.fork({ count: 2 });
  seen.forks = [];
  for (const fork of forks) {
    if (fork instanceof Error) {
      seen.forks.push({ error: fork.message });
      continue;
    }
    const r = await fork.runCode('int(x.sum()) * 10');
    seen.forks.push({ id: fork.sandboxId, value: r.text });
    await fork.kill();
  }
} finally {
  await sandbox.kill();
}
console.log(JSON.stringify(seen));
