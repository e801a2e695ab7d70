// Accelerator detection. /dev/kvm existing proves nothing: under broken nested
// virtualisation a KVM guest crawls for >10 s and then dies with an emulation
// failure. So KVM is probed with a real (tiny) boot under a time limit: the
// guest kernel with no root must reach its "no init" panic quickly. The answer
// is cached per QEMU build, kernel and host kernel release.
import { constants } from 'node:fs';
import { access, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { onProcessExit } from '../util/cleanup.js';
import type { ConfinementSpec } from './confine.js';
import { resolveProgram } from './host-layout.js';
import { launchJailed, type JailedProcess } from './jailed.js';
import { QEMU_SECCOMP } from './machine.js';
import type { Accelerator } from './machine.js';
import type { QemuInstallation } from './qemu-binary.js';

export type AcceleratorChoice = Accelerator | 'auto';

export interface AcceleratorProbe {
  accel: Accelerator;
  /** Why this accelerator was chosen, in words a user can act on. */
  reason: string;
  kvmUsable: boolean;
  probedAt: string;
}

export interface ProbeOptions {
  qemu: QemuInstallation;
  /** A bootable guest kernel (vmlinux) for the test boot. */
  kernelPath: string;
  /** Where to cache the result (a JSON file); omit to always probe. */
  cacheFile?: string;
  timeoutMs?: number;
  /** The jail of the test boot's QEMU, given its scratch dir; none: unconfined. */
  jail?: (scratchDir: string) => ConfinementSpec | null;
}

export const CPU_MODEL: Record<Accelerator, string> = { kvm: 'host', tcg: 'max' };

export async function resolveAccelerator(
  choice: AcceleratorChoice,
  opts: ProbeOptions,
): Promise<AcceleratorProbe> {
  if (choice !== 'auto') {
    return {
      accel: choice,
      reason: `forced with --accel ${choice}`,
      kvmUsable: choice === 'kvm',
      probedAt: new Date().toISOString(),
    };
  }
  return probeAccelerator(opts);
}

export async function probeAccelerator(opts: ProbeOptions): Promise<AcceleratorProbe> {
  const key = `${opts.qemu.versionLine}|${opts.kernelPath}|${release()}`;
  if (opts.cacheFile) {
    const cached = await readFile(opts.cacheFile, 'utf8')
      .then((t) => JSON.parse(t) as { key: string; probe: AcceleratorProbe })
      .catch(() => null);
    if (cached?.key === key) return cached.probe;
  }
  const probe = await runProbe(opts);
  if (opts.cacheFile) await writeFile(opts.cacheFile, JSON.stringify({ key, probe }, null, 2));
  return probe;
}

async function runProbe(opts: ProbeOptions): Promise<AcceleratorProbe> {
  const probedAt = new Date().toISOString();
  try {
    await access('/dev/kvm', constants.R_OK | constants.W_OK);
  } catch {
    return {
      accel: 'tcg',
      reason: '/dev/kvm is missing or not accessible; using TCG',
      kvmUsable: false,
      probedAt,
    };
  }
  const timeoutMs = opts.timeoutMs ?? 5000;
  const dir = await mkdtemp(join(tmpdir(), 'forkd-kvm-probe-'));
  try {
    const console = join(dir, 'console.log');
    const started = Date.now();
    const exit = await bootUntilExit(
      [
        resolveProgram(opts.qemu.binary),
        '-nodefaults',
        '-no-user-config',
        '-nographic',
        '-no-reboot',
        '-accel',
        'kvm',
        '-machine',
        'microvm',
        '-cpu',
        'host',
        '-m',
        '128M',
        '-kernel',
        opts.kernelPath,
        '-append',
        'console=ttyS0 panic=-1 reboot=k quiet loglevel=1',
        '-serial',
        `file:${console}`,
        '-sandbox',
        QEMU_SECCOMP,
      ],
      opts.jail,
      dir,
      timeoutMs,
    );
    const elapsed = Date.now() - started;
    const text = await readFile(console, 'utf8').catch(() => '');
    if (exit === 'timeout') {
      return {
        accel: 'tcg',
        reason: `a KVM test boot did not finish in ${timeoutMs} ms (nested or broken KVM); using TCG`,
        kvmUsable: false,
        probedAt,
      };
    }
    if (/Kernel panic|Unable to mount root|No working init/.test(text)) {
      return {
        accel: 'kvm',
        reason: `a KVM test boot reached the kernel's end in ${elapsed} ms`,
        kvmUsable: true,
        probedAt,
      };
    }
    return {
      accel: 'tcg',
      reason: `a KVM test boot failed (${exit}); using TCG`,
      kvmUsable: false,
      probedAt,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Boot until QEMU exits or `timeoutMs` passes; the answer is how it ended.
 * Jailed like every QEMU (the jail gets the kernel read-only and `dir`).
 */
async function bootUntilExit(
  command: string[],
  jail: ProbeOptions['jail'],
  dir: string,
  timeoutMs: number,
): Promise<string> {
  const spec = jail?.(dir) ?? null;
  if (spec?.identity) await chown(dir, spec.identity.uid, spec.identity.gid);
  let started: JailedProcess;
  try {
    started = await launchJailed(command, spec, {
      stdio: ['ignore', 'ignore', 'pipe', 'ignore', 'ignore'],
      detached: false,
    });
  } catch (err) {
    return (err as Error).message;
  }
  const { child, pid } = started;
  return new Promise((resolve) => {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
    const kill = () => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    };
    const forget = onProcessExit(kill);
    const timer = setTimeout(() => {
      kill();
      resolve('timeout');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      forget();
      resolve(`exit ${code}${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`);
    });
  });
}
