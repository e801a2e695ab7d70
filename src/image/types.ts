// Shared types of the image component: recipes, built images, progress events.

/** The warm language runtime the agent starts at boot (/etc/forkd/runtime.json). */
export interface RuntimeConfig {
  kind: 'python';
  argv: readonly string[];
  imports: readonly string[];
  /**
   * Imported too when the guest's python3 finds them (a user's own root file
   * system may lack them); resolved in the guest at boot (forkd-foreign-root).
   */
  optionalImports?: readonly string[];
}

export interface Recipe {
  name: string;
  description: string;
  /** Debian suite the root filesystem is bootstrapped from (rootfs recipes). */
  suite: string;
  /**
   * Debian packages installed with `debootstrap --include`. An empty list means
   * there is no root filesystem: the initramfs is the whole guest.
   */
  packages: readonly string[];
  /** Kernel modules the initramfs loads (dependencies are added automatically). */
  modules: readonly string[];
  runtime: RuntimeConfig | null;
  /** Default guest memory for parents built from this image. */
  memoryMib: number;
  /** Appended to the base guest kernel command line. */
  kernelCmdlineExtra: readonly string[];
}

export interface GuestImage {
  recipe: string;
  contentHash: string;
  dir: string;
  kernelPath: string;
  kernelVersion: string;
  initrdPath: string;
  rootfsPath: string | null;
  kernelCmdline: string;
  runtime: RuntimeConfig | null;
  memoryMib: number;
  createdAt: string;
}

export interface ProgressEvent {
  /** kernel | modules | initramfs | rootfs | image */
  step: string;
  detail?: string;
  /** 0..1 when the step knows how far it is. */
  fraction?: number;
}

export type ProgressFn = (event: ProgressEvent) => void;
