// Public API of the image component: build, find, list and remove guest
// images (kernel + initramfs + optional ext4 root) from typed recipes.
export { buildImage, type BuildImageOptions } from './build.js';
export { findImage, listImages, removeImage } from './store.js';
export { RECIPES, getRecipe, guestKernelCmdline, recipeHasRootfs } from './recipes.js';
export { ensureKernel, listKernels, type KernelInfo } from './kernel.js';
export { HostCommandError } from '../util/run.js';
export { hostTscKhz } from './host.js';
export type { GuestImage, ProgressEvent, ProgressFn, Recipe, RuntimeConfig } from './types.js';
