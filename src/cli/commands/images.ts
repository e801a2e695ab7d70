// `forkd images`, `forkd rmi`, `forkd image build`: local snapshots and images.
import type { Command } from 'commander';
import { listImages, removeImage } from '../../image/index.js';
import { formatBytes, table } from '../output.js';
import { hubUrl, makeContext, type GlobalOptions } from '../context.js';
import { InvalidArgumentError } from '../../errors.js';
import { chainInRecords } from '../../snapshot/chain.js';
import { diffSizes } from '../../snapshot/manifest.js';
import { hubPackages, hubTable } from './hub.js';
import { recipeRef } from '../recipe-ref.js';

interface BuildOptions extends GlobalOptions {
  force?: boolean;
}

export function registerImages(program: Command): void {
  program
    .command('images')
    .description('list local snapshots and built images, or with --hub the packages a hub offers')
    .option('--hub [url]', 'list the hub’s packages instead (default FORKD_HUB_URL)')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions & { hub?: string | boolean }>();
      const { engine, out } = makeContext(opts);
      if (opts.hub !== undefined) {
        const hub = hubUrl(opts.hub);
        if (!hub) {
          throw new InvalidArgumentError('no hub to list', 'hub', {
            hint: 'pass --hub URL or set FORKD_HUB_URL',
          });
        }
        const { rows } = await hubPackages(hub);
        out.result({ hub, packages: rows }, () => hubTable(rows));
        return;
      }
      const records = await engine.store.list();
      const depthOf = (tag: string): number | null => {
        try {
          return chainInRecords(records, tag).depth;
        } catch {
          return null; // a cycle: forkd info names it
        }
      };
      const snapshots = records.map((r) => ({
        tag: r.tag,
        parent_tag: r.manifest?.parent?.tag ?? null,
        chain_depth: depthOf(r.tag),
        diff_physical_bytes: r.manifest ? (diffSizes(r.manifest)?.physicalBytes ?? null) : null,
        status: r.manifest?.status ?? 'damaged',
        recipe: r.manifest?.image.recipe ?? null,
        accel: r.manifest?.machine.accel ?? null,
        memory_mib: r.manifest?.machine.memoryMib ?? null,
        memory_physical_bytes: r.manifest?.memory.physicalBytes ?? null,
        created_at: r.manifest?.createdAt ?? null,
        qemu_version: r.manifest?.qemu.version ?? null,
        dir: r.dir,
        problem: r.problem ?? null,
      }));
      const images = (await listImages({ dataDir: engine.dataDir.root })).map((i) => ({
        recipe: i.recipe,
        content_hash: i.contentHash,
        kernel_version: i.kernelVersion,
        has_rootfs: i.rootfsPath !== null,
        created_at: i.createdAt,
        dir: i.dir,
      }));
      out.result({ snapshots, images }, () => {
        const snapRows = snapshots.map((s) => [
          s.tag,
          s.status,
          s.recipe ?? '-',
          s.accel ?? '-',
          s.memory_mib ? `${s.memory_mib} MiB` : '-',
          s.memory_physical_bytes !== null ? formatBytes(s.memory_physical_bytes) : '-',
          s.parent_tag
            ? `${s.parent_tag} (+${formatBytes(s.diff_physical_bytes ?? 0)}, depth ${s.chain_depth})`
            : '-',
          s.created_at ?? s.problem ?? '-',
        ]);
        const imageRows = images.map((i) => [
          i.recipe,
          i.content_hash.slice(0, 16),
          i.kernel_version,
          i.has_rootfs ? 'yes' : 'no',
          i.created_at,
        ]);
        return [
          snapshots.length
            ? table(
                ['SNAPSHOT', 'STATUS', 'RECIPE', 'ACCEL', 'MEMORY', 'RESIDENT', 'DIFF OF', 'CREATED'],
                snapRows,
              )
            : 'no snapshots (create one with `forkd snapshot --tag T --image tiny`)',
          '',
          images.length
            ? table(['IMAGE', 'HASH', 'KERNEL', 'ROOTFS', 'BUILT'], imageRows)
            : 'no images built (`forkd image build tiny`)',
        ].join('\n');
      });
    });

  program
    .command('rmi')
    .description('remove a snapshot (refused while sandboxes run from it or diff links depend on it)')
    .argument('<tag>', 'snapshot tag')
    .option('--cascade', 'also remove the snapshots that are diffs of it, and theirs')
    .action(async (tag: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions & { cascade?: boolean }>();
      const { engine, out } = makeContext(opts);
      const removed = await engine.removeSnapshot(tag, { cascade: opts.cascade ?? false });
      out.result({ removed: tag, removed_tags: removed }, () => `removed ${removed.join(', ')}`);
    });

  const image = program.command('image').description('build and remove guest images');
  image
    .command('build')
    .description('build a guest image from a recipe (cached by content hash)')
    .argument(
      '<recipe>',
      'a built-in recipe (tiny, python-numpy, playwright-browser, …) or a recipe file (./my.yaml, docs/recipes.md)',
    )
    .option('--force', 'rebuild even if a cached image matches')
    .action(async (recipe: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<BuildOptions>();
      const { engine, out } = makeContext(opts);
      const started = Date.now();
      const built = await engine.buildImage(await recipeRef(recipe), {
        force: opts.force,
        onProgress: (e) =>
          out.progress(
            `${e.step}${e.detail ? `: ${e.detail}` : ''}${e.fraction !== undefined ? ` (${Math.round(e.fraction * 100)}%)` : ''}`,
          ),
      });
      out.result(
        { ...built, build_ms: Date.now() - started },
        () =>
          `image ${built.recipe} ${built.contentHash.slice(0, 16)} ready in ${Date.now() - started} ms (${built.dir})`,
      );
    });
  image
    .command('rm')
    .description('remove a built image')
    .argument('<recipe-or-dir>', 'recipe name (all its builds) or image dir')
    .action(async (what: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const { engine, out } = makeContext(opts);
      await removeImage(what, { dataDir: engine.dataDir.root });
      out.result({ removed: what }, () => `removed image ${what}`);
    });
}
