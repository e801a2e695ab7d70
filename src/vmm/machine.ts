// The machine description: one typed value from which every QEMU command line
// is built. A parent and its children are described by the same machine and
// differ only in the role-dependent fields (RAM sharing, -incoming, -S), so a
// restore can never fail because a device was spelled differently.
import { InvalidArgumentError } from '../errors.js';

export type Accelerator = 'kvm' | 'tcg';

/** The chardev id of the agent's virtio port. */
export const AGENT_CHARDEV = 'agent';

/** What makes two VMs restore-compatible: everything the device state depends on. */
export interface MachineShape {
  machineType: 'microvm';
  accel: Accelerator;
  /** `-cpu` model; `host` under KVM ties a snapshot to the CPU it was made on. */
  cpuModel: string;
  vcpus: number;
  memoryMib: number;
  /** Whether the machine has a root disk (virtio-blk); part of the device layout. */
  hasDisk: boolean;
  /** Whether a virtio-net device exists; part of the device layout. */
  hasNetwork: boolean;
}

export interface KernelBoot {
  kernelPath: string;
  initrdPath: string;
  cmdline: string;
}

export interface NetworkConfig {
  /** Default-deny egress (`restrict=on`); the guest can still reach forwarded ports. */
  restrictEgress: boolean;
  hostForwards: readonly { hostPort: number; guestPort: number; protocol: 'tcp' | 'udp' }[];
}

/** Runtime paths of one VM: its sockets, logs and its own disk overlay. */
export interface MachinePaths {
  qmpSocket: string;
  agentSocket: string;
  consoleLog: string;
  /** The file behind guest RAM: the snapshot's memory file. */
  ramFile: string;
  /** This VM's qcow2 overlay (never shared between two VMs). */
  diskOverlay: string | null;
}

/**
 * How this VM uses the machine:
 * - `parent`: boots, RAM file shared (writes land in the snapshot's memory file);
 * - `child`: restores from a vmstate, RAM file private (copy-on-write per page);
 * - `writer`: receives a live migration into a shared RAM file, never runs guest code.
 */
export type MachineRole = 'parent' | 'child' | 'writer';

export interface MachineDescription {
  qemuBinary: string;
  shape: MachineShape;
  boot: KernelBoot;
  paths: MachinePaths;
  network: NetworkConfig | null;
  role: MachineRole;
  /** TCG translation cache size; smaller caches cost less memory per child. */
  tcgTranslationCacheMib?: number | undefined;
}

/** Restore-relevant facts the snapshot manifest records and a restore checks. */
export function machineShapeKey(shape: MachineShape): string {
  return [
    shape.machineType,
    shape.accel,
    shape.cpuModel,
    `${shape.vcpus}cpu`,
    `${shape.memoryMib}M`,
    shape.hasDisk ? 'disk' : 'nodisk',
    shape.hasNetwork ? 'net' : 'nonet',
  ].join('/');
}

export const QEMU_SECCOMP = 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny';

/** QEMU's option syntax doubles commas inside a value. */
function escapeOption(value: string): string {
  return value.replaceAll(',', ',,');
}

export function buildQemuArgs(m: MachineDescription): string[] {
  const { shape, boot, paths, role } = m;
  const accel =
    shape.accel === 'tcg' && m.tcgTranslationCacheMib !== undefined
      ? `tcg,tb-size=${m.tcgTranslationCacheMib}`
      : shape.accel;
  const ramShared = role === 'parent' || role === 'writer';
  const args = [
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-accel',
    accel,
    '-machine',
    `${shape.machineType},memory-backend=mem,x-option-roms=off`,
    '-cpu',
    shape.cpuModel,
    '-smp',
    String(shape.vcpus),
    '-m',
    `${shape.memoryMib}M`,
    '-object',
    `memory-backend-file,id=mem,size=${shape.memoryMib}M,mem-path=${escapeOption(paths.ramFile)},share=${ramShared ? 'on' : 'off'}`,
    '-kernel',
    boot.kernelPath,
    '-initrd',
    boot.initrdPath,
    '-append',
    boot.cmdline,
    '-chardev',
    `file,id=console,path=${escapeOption(paths.consoleLog)}`,
    '-serial',
    'chardev:console',
    '-chardev',
    `socket,id=qmp,path=${escapeOption(paths.qmpSocket)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    `socket,id=${AGENT_CHARDEV},path=${escapeOption(paths.agentSocket)},server=on,wait=off`,
    '-device',
    'virtio-serial-device,max_ports=2',
    '-device',
    `virtserialport,chardev=${AGENT_CHARDEV},name=forkd.agent`,
    '-object',
    'rng-random,id=rng,filename=/dev/urandom',
    '-device',
    'virtio-rng-device,rng=rng',
    // QEMU's seccomp filter, on for every role: no obsolete syscalls, no
    // setuid, no fork/exec (device state moves through descriptors and
    // sockets, never `exec:`), no scheduler or priority changes.
    '-sandbox',
    QEMU_SECCOMP,
  ];
  if (shape.hasDisk) {
    if (!paths.diskOverlay)
      throw new InvalidArgumentError('machine has a disk but no overlay path', 'diskOverlay');
    args.push(
      '-blockdev',
      `driver=qcow2,node-name=root,file.driver=file,file.filename=${escapeOption(paths.diskOverlay)},discard=unmap`,
      '-device',
      'virtio-blk-device,drive=root',
    );
  }
  if (shape.hasNetwork) {
    args.push('-netdev', userNetdev(m.network), '-device', 'virtio-net-device,netdev=net0');
  }
  if (role === 'child') args.push('-incoming', 'defer');
  if (role === 'writer') args.push('-S', '-incoming', 'defer');
  return args;
}

function userNetdev(network: NetworkConfig | null): string {
  const parts = ['user', 'id=net0'];
  if (network?.restrictEgress) parts.push('restrict=on');
  for (const fwd of network?.hostForwards ?? []) {
    parts.push(`hostfwd=${fwd.protocol}:127.0.0.1:${fwd.hostPort}-:${fwd.guestPort}`);
  }
  return parts.join(',');
}
