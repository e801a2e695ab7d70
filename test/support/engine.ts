// Shared set-up for VM tests: one data dir per test run for images and
// kernels (downloaded once), and checks that a test left nothing running.
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Engine } from '../../src/engine/index.js';

/** Images and kernels are cached here across test files (and runs). */
export const TEST_DATA_DIR = resolve(process.env.FORKD_TEST_DATA_DIR ?? '.forkd-test');

export function testEngine(dataDir = TEST_DATA_DIR): Engine {
  mkdirSync(dataDir, { recursive: true });
  // Tests must pass on hosts with and without KVM; the default probe decides.
  return new Engine({
    dataDir,
    accel: (process.env.FORKD_TEST_ACCEL as 'tcg' | 'kvm' | undefined) ?? 'auto',
  });
}

/** QEMU processes (started by path or by name) whose command line mentions `marker` (a run dir or data dir). */
export function qemuProcessesUsing(marker: string): number[] {
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'utf8');
      const program = (cmdline.split('\0')[0] ?? '').split('/').pop() ?? '';
      if (program.startsWith('qemu-system') && cmdline.includes(marker)) {
        pids.push(Number(name));
      }
    } catch {
      // process went away
    }
  }
  return pids;
}

export function runDirEntries(engine: Engine): string[] {
  try {
    return readdirSync(engine.dataDir.runDir);
  } catch {
    return [];
  }
}
