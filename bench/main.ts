// Benchmark entry: `npm run bench -- <name>`. Results go to bench/results/.
import { Engine } from '../src/engine/index.js';
import { errorMessage } from '../src/errors.js';
import { benchApi } from './api.js';
import { benchBranch } from './branch.js';
import { benchBrowser } from './browser.js';
import { benchChain } from './chain.js';
import { benchE2b } from './e2b.js';
import { benchFork } from './fork.js';
import { benchForkK } from './fork-k.js';
import { benchHub } from './hub.js';
import { benchIsolation } from './isolation.js';
import { benchLoad } from './load.js';

const BENCHES: Record<string, (engine: Engine, log: (s: string) => void) => Promise<void>> = {
  fork: benchFork,
  api: benchApi,
  branch: benchBranch,
  load: benchLoad,
  hub: benchHub,
  isolation: benchIsolation,
  chain: benchChain,
  browser: benchBrowser,
  'fork-k': benchForkK,
  e2b: benchE2b,
};

const name = process.argv[2];
const bench = name ? BENCHES[name] : undefined;
if (!bench) {
  process.stderr.write(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}>\n`);
  process.exit(2);
}
const engine = new Engine({ dataDir: process.env.FORKD_DATA_DIR });
const started = Date.now();
try {
  await bench(engine, (s) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${s}\n`));
} catch (err) {
  process.stderr.write(`bench ${name} failed: ${errorMessage(err)}\n`);
  process.exitCode = 1;
}
