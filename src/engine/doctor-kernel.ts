// Finds an already-downloaded guest kernel for the doctor's KVM probe
// (the doctor never downloads one itself).
import { listKernels } from '../image/kernel.js';

export async function listKernelsForDoctor(dataDir: string): Promise<string[]> {
  const kernels = await listKernels(dataDir).catch(() => []);
  return kernels.map((k) => k.vmlinuxPath);
}
