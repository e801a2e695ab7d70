// `forkd snapshot`: boot a parent from an image, warm it, freeze it under a tag.
import type { Command } from 'commander';
import { formatBytes } from '../output.js';
import { intOption, makeContext, type GlobalOptions } from '../context.js';

interface SnapshotOptions extends GlobalOptions {
  tag: string;
  image: string;
  memMib?: number;
  vcpus: number;
  bootTimeoutSecs: number;
  replace?: boolean;
}

export function registerSnapshot(program: Command): void {
  program
    .command('snapshot')
    .description('boot a parent VM from an image, wait until it is warm, and freeze it as a snapshot')
    .requiredOption('-t, --tag <tag>', 'name of the new snapshot ([A-Za-z0-9_-], 1-64 chars)')
    .requiredOption(
      '-i, --image <recipe>',
      'image recipe to boot (tiny, python-numpy); built first if missing',
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
      const { engine, out } = makeContext(opts);
      const manifest = await engine.createSnapshot({
        tag: opts.tag,
        recipe: opts.image,
        memoryMib: opts.memMib,
        vcpus: opts.vcpus,
        bootTimeoutMs: opts.bootTimeoutSecs * 1000,
        replace: opts.replace,
        onProgress: (step) => out.progress(step),
        onImageProgress: (e) => out.progress(`image: ${e.step}${e.detail ? `: ${e.detail}` : ''}`),
      });
      out.result(manifest, () =>
        [
          `snapshot ${manifest.tag} ready (${manifest.machine.accel}, ${manifest.machine.memoryMib} MiB, ${manifest.machine.vcpus} vCPU)`,
          `  boot to ready ${manifest.timings.bootToReadyMs} ms, freeze ${manifest.timings.freezeMs} ms, total ${manifest.timings.totalMs} ms`,
          `  memory ${formatBytes(manifest.memory.physicalBytes)} resident of ${formatBytes(manifest.memory.logicalBytes)}, device state ${formatBytes(manifest.vmstate.bytes)}`,
          `  accelerator: ${manifest.accelReason}`,
        ].join('\n'),
      );
    });
}
