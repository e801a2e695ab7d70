// Shared pieces of the benchmarks: machine description, memory accounting,
// percentiles, and writing results as JSON plus a markdown table.
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';

export interface BenchRow {
  metric: string;
  value: number;
  unit: string;
  target?: string;
  met?: boolean;
  note?: string;
}

export function machineSummary(accel: string): string {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return `${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}, accel ${accel}`;
}

/** Proportional set size of a process in bytes (shared pages split among sharers). */
export async function pssBytes(pid: number): Promise<number> {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = /^Pss:\s+(\d+) kB/m.exec(text)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}

export { percentile } from '../src/util/stats.js';

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

export async function writeResults(
  name: string,
  machine: string,
  rows: BenchRow[],
  extra: Record<string, unknown> = {},
): Promise<string> {
  const dir = join('bench', 'results');
  await mkdir(dir, { recursive: true });
  const when = new Date().toISOString();
  await writeFile(
    join(dir, `${name}.json`),
    JSON.stringify({ name, when, machine, rows, ...extra }, null, 2) + '\n',
  );
  const table = [
    `Bench \`${name}\`, ${when.slice(0, 10)}, on ${machine}.`,
    '',
    '| metric | value | target | met |',
    '| --- | --- | --- | --- |',
    ...rows.map(
      (r) =>
        `| ${r.metric}${r.note ? ` (${r.note})` : ''} | ${r.value} ${r.unit} | ${r.target ?? ''} | ${r.met === undefined ? '' : r.met ? 'yes' : 'no'} |`,
    ),
  ].join('\n');
  await writeFile(join(dir, `${name}.md`), table + '\n');
  return table;
}

/** QEMU processes whose command line mentions `marker` (a run dir). */
export { qemuPidsWith as qemuPidsUsing } from '../src/vmm/process.js';
