// Public API of the image component: build, find, list and remove guest
// images (kernel + initramfs + optional ext4 root) from typed recipes, and
// stage one from a caller's own kernel and ext4 files.
export { buildImage, type BuildImageOptions } from './build.js';
export { findImage, listImages, removeImage } from './store.js';
export { builtinRecipes, getRecipe, guestKernelCmdline, recipeHasRootfs } from './recipes.js';
export { ensureKernel, listKernels, type KernelInfo } from './kernel.js';
export { HostCommandError } from '../util/run.js';
export { hostTscKhz } from './host.js';
export type { GuestImage, ProgressEvent, ProgressFn, Recipe, RuntimeConfig, WarmupPlan } from './types.js';
export { isRecipePath, loadRecipeFile } from './recipe-file.js';
export { prepareForeignImage, type ForeignImage, type ForeignImageOptions } from './foreign.js';
export { checkKernelFile, checkRootfsFile, type UserKernel, type UserRootfs } from './user-files.js';
