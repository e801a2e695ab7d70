// `forkd pack` and `forkd unpack`: a snapshot to a portable .forkd.tar.zst
// and back.
import type { Command } from 'commander';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { AlreadyExistsError } from '../../errors.js';
import {
  addTrustOptions,
  intOption,
  makeContext,
  trustFromOptions,
  type GlobalOptions,
  type TrustOptions,
} from '../context.js';
import { loadSigningKey } from '../../hub/signing.js';
import { formatBytes } from '../output.js';
import { transferProgress } from '../transfer-progress.js';
import { packFileSize } from '../../hub/pack-info.js';
import { carriesAncestors, type PackManifest } from '../../hub/pack-manifest.js';
import { interruptible } from '../../util/cleanup.js';

interface PackCliOptions extends GlobalOptions {
  tag: string;
  output?: string;
  level: number;
  description?: string;
  force?: boolean;
  signKey?: string;
  selfContained?: boolean;
  withAncestors?: boolean;
}

interface UnpackCliOptions extends GlobalOptions, TrustOptions {
  tag?: string;
  force?: boolean;
}

export function registerPack(program: Command): void {
  program
    .command('pack')
    .description(
      'write a snapshot as one portable .forkd.tar.zst (all its files, zero blocks left out; a diff link: its diff only)',
    )
    .requiredOption('--tag <tag>', 'snapshot to pack')
    .option('-o, --output <file>', 'where to write it (default ./<tag>.forkd.tar.zst)')
    .option(
      '--level <n>',
      'zstd level 1-19: 19 is a sixth smaller and ten times slower',
      intOption('--level', 1, 19),
      9,
    )
    .option('--description <text>', 'one line saying what the snapshot is for (shown by hubs)')
    .option('--force', 'overwrite the output file')
    .option('--sign-key <keyfile>', 'sign the pack with this ed25519 private key (`forkd keygen`)')
    .option(
      '--self-contained',
      'pack a diff link whole (flat files, no parent) instead of as a diff over its ancestors',
    )
    .option(
      '--with-ancestors',
      'carry a diff link’s ancestors too (the root whole, each later link as a diff): one file that installs anywhere',
    )
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<PackCliOptions>();
      const { engine, out } = makeContext(opts);
      const signKey = opts.signKey ? await loadSigningKey(resolve(opts.signKey)) : undefined;
      const output = resolve(opts.output ?? `${opts.tag}.forkd.tar.zst`);
      if (
        !opts.force &&
        (await stat(output).then(
          () => true,
          () => false,
        ))
      ) {
        throw new AlreadyExistsError(
          `${output} already exists`,
          { kind: 'file', name: output },
          { hint: 'pass --force to overwrite it, or -o another path' },
        );
      }
      out.progress(`packing snapshot ${opts.tag} into ${output}`);
      const packed = await interruptible((signal) =>
        engine.pack(opts.tag, {
          output,
          level: opts.level,
          description: opts.description,
          signKey,
          selfContained: opts.selfContained,
          withAncestors: opts.withAncestors,
          onProgress: transferProgress(out),
          signal,
        }),
      );
      const files = [...packed.manifest.files, ...packed.manifest.chain.flatMap((l) => l.files)];
      const logical = files.reduce((sum, f) => sum + f.size, 0);
      out.result(
        {
          path: packed.path,
          bytes: packed.bytes,
          sha256: packed.sha256,
          tag: packed.manifest.tag,
          logical_bytes: logical,
          stored_bytes: files.reduce((sum, f) => sum + f.stored_bytes, 0),
          scan_ms: packed.timings.scanMs,
          write_ms: packed.timings.writeMs,
          signer: packed.signature?.key_id ?? null,
          manifest: packed.manifest,
        },
        () =>
          `packed ${opts.tag} into ${packed.path}: ${formatBytes(packed.bytes)} (from ${formatBytes(logical)} of files) in ${packed.timings.scanMs + packed.timings.writeMs} ms\nsha256 ${packed.sha256}` +
          packChainLine(packed.manifest) +
          (packed.signature
            ? `\nsigned by key ${packed.signature.key_id}`
            : '\nunsigned (sign with --sign-key)'),
      );
    });

  const unpack = program
    .command('unpack')
    .description('install a .forkd.tar.zst as a snapshot, verifying every file (- reads stdin)')
    .argument('<file>', 'pack file, or - for standard input')
    .option('--tag <tag>', "install under this tag instead of the pack's own")
    .option('--force', 'replace a snapshot with the same tag');
  addTrustOptions(unpack).action(async (file: string, _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<UnpackCliOptions>();
    const { engine, out } = makeContext(opts);
    const trust = await trustFromOptions(engine, opts);
    const fromStdin = file === '-';
    const path = fromStdin ? '(stdin)' : resolve(file);
    const size = fromStdin ? null : await packFileSize(path);
    const unpacked = await interruptible((signal) =>
      engine.unpack({
        source: fromStdin ? process.stdin : createReadStream(path),
        sourceName: path,
        sourceBytes: size,
        tag: opts.tag,
        force: opts.force,
        trust,
        onProgress: transferProgress(out),
        signal,
      }),
    );
    out.result(
      {
        tag: unpacked.tag,
        dir: unpacked.dir,
        signer: unpacked.signer,
        stored_bytes: unpacked.storedBytes,
        unpack_ms: unpacked.ms,
        ancestors: unpacked.ancestors,
        pack: unpacked.pack,
      },
      () =>
        [
          `unpacked snapshot ${unpacked.tag} (${formatBytes(unpacked.storedBytes)} on disk, every file verified) in ${unpacked.ms} ms`,
          ...unpacked.ancestors.map(
            (a) =>
              `ancestor ${a.tag}: ${a.installed ? 'installed from the pack' : 'here already (same content hash)'}`,
          ),
          `fork it: forkd fork --tag ${unpacked.tag} -n 10`,
        ].join('\n'),
    );
  });
}

/** What a diff pack needs where it is unpacked. */
function packChainLine(manifest: PackManifest): string {
  if (manifest.chain.length === 0) return '';
  const chain = manifest.chain.map((l) => l.tag).join(' > ');
  return carriesAncestors(manifest)
    ? `\ncarries its ancestors ${chain}: installs where none of them is (those present with the same content hash are kept)`
    : `\na diff over ${chain}: unpack needs them installed (or pack with --with-ancestors or --self-contained)`;
}
