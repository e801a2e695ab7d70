// `forkd snapshot`: boot a parent from an image recipe, or from the caller's
// own kernel and ext4 files (--kernel --rootfs), warm it, freeze it under a tag.
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../../errors.js';
import { formatBytes } from '../output.js';
import { intOption, makeContext, type GlobalOptions } from '../context.js';
import type { ProgressEvent } from '../../image/index.js';
import { recipeRef } from '../recipe-ref.js';
import { registerSnapshotDiff } from './snapshot-diff.js';

interface SnapshotOptions extends GlobalOptions {
  tag?: string;
  image?: string;
  kernel?: string;
  rootfs?: string;
  memMib?: number;
  vcpus: number;
  bootTimeoutSecs: number;
  replace?: boolean;
}

export function registerSnapshot(program: Command): void {
  const snapshot = program
    .command('snapshot')
    .description(
      'boot a parent VM from an image recipe (or your own kernel and ext4 image), wait until it is warm, and freeze it as a snapshot',
    )
    // Not required here: `forkd snapshot diff` takes it too (commander would demand it of both).
    .option('-t, --tag <tag>', 'name of the new snapshot ([A-Za-z0-9_-], 1-64 chars)')
    .option(
      '-i, --image <recipe>',
      'image recipe to boot: a built-in one (tiny, python-numpy, playwright-browser, …) or a recipe file (./my.yaml); built first if missing',
    )
    .option('--kernel <path>', 'boot this kernel (bzImage or PVH vmlinux) instead of a recipe; with --rootfs')
    .option(
      '--rootfs <path>',
      'on this ext4 image with python3 (copied, never written; numpy imported if present); with --kernel',
    )
    .option('--mem-mib <mib>', 'guest memory (default: the recipe’s)', intOption('--mem-mib', 64, 65536))
    .option('--vcpus <n>', 'guest vCPUs', intOption('--vcpus', 1, 64), 1)
    .option(
      '--boot-timeout-secs <s>',
      'how long the guest may take to become ready',
      intOption('--boot-timeout-secs', 1, 3600),
      120,
    )
    .option('--replace', 'replace an existing snapshot with this tag')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<SnapshotOptions>();
      if (!opts.tag) throw new InvalidArgumentError('name the new snapshot with -t/--tag', 'tag');
      const { engine, out } = makeContext(opts);
      const request = {
        tag: opts.tag,
        memoryMib: opts.memMib,
        vcpus: opts.vcpus,
        bootTimeoutMs: opts.bootTimeoutSecs * 1000,
        replace: opts.replace,
        onProgress: (step: string) => out.progress(step),
        onImageProgress: (e: ProgressEvent) =>
          out.progress(`image: ${e.step}${e.detail ? `: ${e.detail}` : ''}`),
      };
      let manifest;
      if (opts.kernel !== undefined || opts.rootfs !== undefined) {
        if (opts.image !== undefined) {
          throw new InvalidArgumentError('use either --image or --kernel with --rootfs, not both', 'image');
        }
        if (opts.kernel === undefined || opts.rootfs === undefined) {
          throw new InvalidArgumentError('--kernel and --rootfs go together', 'kernel');
        }
        // Relative to where the command runs (the engine takes absolute paths only).
        const files = { kernelPath: resolve(opts.kernel), rootfsPath: resolve(opts.rootfs) };
        manifest = await engine.createSnapshotFromFiles({ ...request, ...files });
      } else {
        if (opts.image === undefined) {
          throw new InvalidArgumentError(
            'say what to boot: --image <recipe>, or --kernel and --rootfs',
            'image',
          );
        }
        manifest = await engine.createSnapshot({ ...request, recipe: await recipeRef(opts.image) });
      }
      out.result(manifest, () =>
        [
          `snapshot ${manifest.tag} ready (${manifest.machine.accel}, ${manifest.machine.memoryMib} MiB, ${manifest.machine.vcpus} vCPU)`,
          `  boot to ready ${manifest.timings.bootToReadyMs} ms, freeze ${manifest.timings.freezeMs} ms, total ${manifest.timings.totalMs} ms`,
          `  memory ${formatBytes(manifest.memory.physicalBytes)} resident of ${formatBytes(manifest.memory.logicalBytes)}, device state ${formatBytes(manifest.vmstate.bytes)}`,
          `  accelerator: ${manifest.accelReason}`,
        ].join('\n'),
      );
    });
  registerSnapshotDiff(snapshot);
}
