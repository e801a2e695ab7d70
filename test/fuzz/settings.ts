// How hard the property tests push: a fixed seed and a few hundred runs each
// inside `npm test` (so a failure reproduces), many more with a fresh seed
// under `npm run fuzz` (FORKD_FUZZ_RUNS, FORKD_FUZZ_SEED). fast-check prints
// the seed and the shrunk counterexample of any failure.
import type { Parameters } from 'fast-check';

export function fuzzParams<T>(runs = 300): Parameters<T> {
  const scale = Number(process.env.FORKD_FUZZ_RUNS ?? '0');
  const seedText = process.env.FORKD_FUZZ_SEED;
  const seed = seedText === 'random' ? Date.now() : Number(seedText ?? 20261201);
  return { numRuns: scale > 0 ? Math.max(runs, scale) : runs, seed };
}
