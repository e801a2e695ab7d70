// Whether this host can restore a snapshot: a vmstate only loads into the
// same QEMU version with the same machine; a KVM snapshot needs usable KVM.
import { IncompatibleError } from '../errors.js';
import type { SnapshotManifest } from './manifest.js';

export interface HostFacts {
  qemuVersion: string;
  kvmUsable: boolean;
}

export function checkRestorable(manifest: SnapshotManifest, host: HostFacts): void {
  if (manifest.qemu.version !== host.qemuVersion) {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} was made with QEMU ${manifest.qemu.version}, this host has QEMU ${host.qemuVersion}`,
      manifest.qemu.version,
      host.qemuVersion,
      { hint: 'recreate the snapshot on this host, or restore it where that QEMU is installed' },
    );
  }
  // A manifest from disk may name a machine type this forkd does not know.
  const machineType: string = manifest.machine.machineType;
  if (machineType !== 'microvm') {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} uses machine type ${machineType}; this forkd restores microvm`,
      machineType,
      'microvm',
    );
  }
  if (manifest.machine.accel === 'kvm' && !host.kvmUsable) {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} was made under KVM, which is not usable on this host`,
      'kvm',
      'tcg',
      { hint: 'recreate the snapshot here with --accel tcg' },
    );
  }
}
