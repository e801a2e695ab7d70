// A running QEMU with its control channel: launches the process from a
// machine description, connects QMP while watching for an early exit (so a
// bad command line fails fast with QEMU's own message), and tears everything
// down on every path.
import { QmpClient } from '../vmm/qmp.js';
import { QemuProcess, unlessExited } from '../vmm/process.js';
import type { MachineDescription } from '../vmm/machine.js';
import { deadlineSignal, sleep, type CallOptions } from '../util/abort.js';
import { jailFor, type JailRequest } from './jail.js';
import { writeVmRecord, type RunDir } from './run-dir.js';

/** A running QEMU and its control channel, however we came to hold it. */
export interface VmHandle {
  process: QemuProcess;
  qmp: QmpClient;
  runDir: RunDir;
}

/** A QEMU this process launched, with the machine it was launched from. */
export interface LaunchedVm extends VmHandle {
  machine: MachineDescription;
}

export { unlessExited };

export interface LaunchVmOptions extends CallOptions {
  killOnExit?: boolean;
  jail: JailRequest;
  /** Device state to restore (a child). */
  stateIn?: string;
}

export async function launchVm(
  machine: MachineDescription,
  runDir: RunDir,
  opts: LaunchVmOptions,
): Promise<LaunchedVm> {
  // Who is starting it, before it starts: a cleanup that runs meanwhile (a
  // daemon starting) leaves it alone while this process lives, and kills it
  // by its command line if this process dies before the record has its pid.
  await writeVmRecord(runDir, {
    pid: 0,
    role: machine.role,
    startedAt: new Date().toISOString(),
    ownerPid: process.pid,
  });
  const proc = await QemuProcess.launch(machine, {
    logPath: runDir.paths.qemuLog,
    killOnExit: opts.killOnExit ?? true,
    confinement: jailFor(runDir, machine.shape.accel, opts.jail),
    stateIn: opts.stateIn,
    signal: opts.signal,
  });
  try {
    await writeVmRecord(runDir, {
      pid: proc.pid,
      role: machine.role,
      startedAt: new Date().toISOString(),
      ownerPid: process.pid,
    });
    const signal = deadlineSignal(
      { signal: opts.signal, timeoutMs: opts.timeoutMs ?? 15_000 },
      'starting QEMU',
    );
    const qmp = await unlessExited(
      proc,
      'starting QEMU',
      QmpClient.connect(machine.paths.qmpSocket, { signal }),
    );
    return { machine, process: proc, qmp, runDir };
  } catch (err) {
    // QEMU dying closes the QMP socket a moment before its exit is reaped;
    // its own last words explain far more than "connection closed".
    const died = await Promise.race([proc.exited.then(() => true), sleep(500).then(() => false)]);
    if (died) throw await proc.exitError('starting QEMU');
    await proc.terminate();
    throw err;
  }
}

/**
 * Kill QEMU, close its channels and remove its run dir (which frees its uid).
 * `beforeRelease` runs between the two: what must be undone while the uid is
 * still this VM's. If it fails the run dir (and uid) is kept for `forkd
 * cleanup` rather than handed on. Never throws.
 */
export async function destroyVm(
  vm: { process: QemuProcess; qmp?: QmpClient | undefined; runDir: RunDir },
  beforeRelease?: () => Promise<void>,
): Promise<void> {
  vm.qmp?.close();
  await vm.process.terminate();
  try {
    await beforeRelease?.();
  } catch {
    vm.runDir.keepOnExit(); // not even this process's exit may remove it
    return;
  }
  await vm.runDir.remove().catch(() => undefined);
}
