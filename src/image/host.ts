// Host facts the guest kernel command line depends on. Under QEMU TCG the
// guest's TSC runs at the host's TSC rate, and when the host is busy the
// guest's PIT-based TSC calibration fails ("tsc: Unable to calibrate against
// PIT"), after which the kernel spins forever in calibrate_delay() or
// setup_boot_APIC_clock() (measured: 11 of 12 boots hung with two busy host
// cores, 0 of 12 with tsc_early_khz=). So we pass the host's TSC frequency.
import { readFileSync } from 'node:fs';

/**
 * The host TSC frequency in kHz when it can be read stably from
 * /proc/cpuinfo, else null. "cpu MHz" is the TSC rate on hosts whose kernel
 * knows it (flag tsc_known_freq, typical for VMs); otherwise an Intel-style
 * nominal "@ 2.60GHz" in the model name is the TSC rate. Never the current
 * (scaling) frequency, so the value, and the image hash, stay stable.
 */
export function parseTscKhz(cpuinfo: string): number | null {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? '';
  const flags = (/^flags\s*:\s*(.*)$/m.exec(first)?.[1] ?? '').split(/\s+/);
  if (!flags.includes('constant_tsc')) return null;
  if (flags.includes('tsc_known_freq')) {
    const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(first)?.[1]);
    if (Number.isFinite(mhz) && mhz > 100) return Math.round(mhz * 1000);
  }
  const ghz = Number(/^model name\s*:.*@\s*([\d.]+)\s*GHz/m.exec(first)?.[1]);
  if (Number.isFinite(ghz) && ghz > 0.1) return Math.round(ghz * 1_000_000);
  return null;
}

export function hostTscKhz(): number | null {
  try {
    return parseTscKhz(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return null;
  }
}
