// Runs the compiled test files with node's built-in runner. Node 20 has no
// glob support for --test, so the files are listed here; a filter argument
// (a substring of the path) narrows the run, e.g. `npm test -- snapshot`.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...findTests(path));
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const filters = process.argv.slice(2);
const files = findTests('dist/test')
  .filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
  .sort();
if (files.length === 0) {
  console.error(`no test files matched ${filters.join(' ') || 'dist/test'}`);
  process.exit(1);
}
// Test files run one at a time: VM tests saturate both cores and would only
// slow each other down (and turn timing-sensitive waits flaky).
const result = spawnSync(
  process.execPath,
  // A hung VM must fail its test, not stall the whole run until CI's limit.
  // The limit holds for each file as a whole too: a recipe's first image
  // build and parent boot (Chromium under TCG) take minutes.
  ['--test', '--test-concurrency=1', '--test-timeout=600000', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
