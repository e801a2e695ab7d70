// `forkd hub build DIR`: every recipe (or those named) built, snapshotted,
// packed, signed and published into a hub directory, ready for
// `forkd hub serve DIR`.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { buildHub } from '../../engine/hub-build.js';
import { builtinRecipes } from '../../image/index.js';
import { loadSigningKey } from '../../hub/signing.js';
import { interruptible } from '../../util/cleanup.js';
import { intOption, makeContext, type GlobalOptions } from '../context.js';
import { formatBytes, table } from '../output.js';
import { recipeRef } from '../recipe-ref.js';

interface HubBuildCliOptions extends GlobalOptions {
  recipes?: string;
  owner: string;
  version?: string;
  signKey?: string;
  level: number;
  force?: boolean;
}

export function registerHubBuild(hub: Command): void {
  hub
    .command('build')
    .description('build, snapshot, pack (and sign) recipes and publish them into a hub directory')
    .argument('<dir>', 'hub directory (created if missing); serve it with forkd hub serve DIR')
    .option(
      '--recipes <list>',
      'comma-separated built-in recipe names and recipe files (default: every built-in recipe)',
    )
    .option('--owner <owner>', 'packages are published as <owner>/<recipe name>', 'forkd')
    .option(
      '--version <v>',
      'version label for every package (default: the build time, e.g. 20261202T041207Z)',
    )
    .option('--sign-key <keyfile>', 'sign every pack with this ed25519 private key (`forkd keygen`)')
    .option('--level <n>', 'zstd level 1-19', intOption('--level', 1, 19), 9)
    .option('--force', 'replace versions that are already published')
    .action(async (dir: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<HubBuildCliOptions>();
      const { engine, out } = makeContext(opts);
      const names = opts.recipes
        ? opts.recipes
            .split(',')
            .map((r) => r.trim())
            .filter((r) => r !== '')
        : builtinRecipes().map((r) => r.name);
      const recipes = await Promise.all(names.map((name) => recipeRef(name)));
      const signKey = opts.signKey ? await loadSigningKey(resolve(opts.signKey)) : undefined;
      const hubDir = resolve(dir);
      const built = await interruptible((signal) =>
        buildHub(engine, {
          hubDir,
          recipes,
          owner: opts.owner,
          version: opts.version,
          signKey,
          level: opts.level,
          force: opts.force,
          onProgress: (step) => out.progress(step),
          signal,
        }),
      );
      out.result(
        {
          dir: hubDir,
          packages: built.map((p) => ({
            recipe: p.recipe,
            name: p.name,
            version: p.version,
            size_bytes: p.sizeBytes,
            sha256: p.sha256,
            signer: p.signer,
            snapshot_ms: p.snapshotMs,
            pack_ms: p.packMs,
          })),
        },
        () =>
          [
            table(
              ['PACKAGE', 'VERSION', 'SIZE', 'SIGNED BY', 'SNAPSHOT', 'PACK'],
              built.map((p) => [
                p.name,
                p.version,
                formatBytes(p.sizeBytes),
                p.signer ?? 'unsigned',
                `${(p.snapshotMs / 1000).toFixed(1)} s`,
                `${(p.packMs / 1000).toFixed(1)} s`,
              ]),
            ),
            `serve it: forkd hub serve ${hubDir}`,
          ].join('\n'),
      );
    });
}
