// Whether this host can restore a snapshot: a vmstate only loads into the
// same QEMU version with the same machine; a KVM snapshot needs usable KVM.
import { IncompatibleError } from '../errors.js';
import type { SnapshotManifest } from './manifest.js';

export interface HostFacts {
  qemuVersion: string;
  kvmUsable: boolean;
}

/** What restoring depends on; a pack manifest says it too, so it is checked before a pack is unpacked. */
export interface RestoreRequirements {
  tag: string;
  qemuVersion: string;
  machineType: string;
  accel: string;
}

export function checkRestorable(manifest: SnapshotManifest, host: HostFacts): void {
  checkRequirements(
    {
      tag: manifest.tag,
      qemuVersion: manifest.qemu.version,
      machineType: manifest.machine.machineType,
      accel: manifest.machine.accel,
    },
    host,
  );
}

export function checkRequirements(needs: RestoreRequirements, host: HostFacts): void {
  const manifest = { tag: needs.tag };
  if (needs.qemuVersion !== host.qemuVersion) {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} was made with QEMU ${needs.qemuVersion}, this host has QEMU ${host.qemuVersion}`,
      needs.qemuVersion,
      host.qemuVersion,
      { hint: 'recreate the snapshot on this host, or restore it where that QEMU is installed' },
    );
  }
  const machineType = needs.machineType;
  if (machineType !== 'microvm') {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} uses machine type ${machineType}; this forkd restores microvm`,
      machineType,
      'microvm',
    );
  }
  if (needs.accel === 'kvm' && !host.kvmUsable) {
    throw new IncompatibleError(
      `snapshot ${JSON.stringify(manifest.tag)} was made under KVM, which is not usable on this host`,
      'kvm',
      'tcg',
      { hint: 'recreate the snapshot here with --accel tcg' },
    );
  }
}
