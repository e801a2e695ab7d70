// Shared types of the image component: recipes, built images, progress events.

/** The languages of forkd's warm runtimes (guest/runtime/; see runtimes.ts). */
export type RuntimeKind = 'python' | 'node' | 'browser' | 'postgres' | 'jupyter';

/** The warm language runtime the agent starts at boot (/etc/forkd/runtime.json). */
export interface RuntimeConfig {
  kind: RuntimeKind;
  argv: readonly string[];
  /**
   * Modules loaded before the snapshot, each bound to a global of the eval
   * context: "numpy", "numpy as np"; for node "fs", "fs/promises as fsp".
   */
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
   * Debian packages installed with `mmdebstrap --include`. An empty list means
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
  /** Default vCPUs for parents built from this image (1 when absent). */
  vcpus?: number;
  /** npm packages (name@version) installed on the host and copied to NPM_MODULES_DIR in the guest. */
  npm?: readonly string[];
  /** Host files copied into the root filesystem; their contents are part of the image's hash. */
  files?: readonly RecipeFileCopy[];
  /** What the parent runs before it is frozen: see WarmupPlan. */
  warmup?: WarmupPlan;
}

export interface RecipeFileCopy {
  /** Absolute path on the host. */
  source: string;
  /** Absolute path in the guest. */
  dest: string;
  mode: number;
}

/**
 * Run in the parent, as root, after its agent (and runtime) said ready and
 * before the freeze: each step in order (one failing fails the snapshot),
 * then the readiness check until it exits 0.
 */
export interface WarmupPlan {
  steps: readonly string[];
  ready: string | null;
  /** For the steps and the readiness check together. */
  timeoutMs: number;
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
  vcpus?: number;
  warmup?: WarmupPlan;
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
