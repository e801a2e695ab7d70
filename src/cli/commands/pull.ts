// `forkd pull` and `forkd push`: snapshots from and to a hub (or any URL).
import type { Command } from 'commander';
import { interruptible } from '../../util/cleanup.js';
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { uploadFile, redact } from '../../hub/upload.js';
import {
  addTrustOptions,
  hubUrl,
  intOption,
  makeContext,
  trustFromOptions,
  type GlobalOptions,
  type TrustOptions,
} from '../context.js';
import { loadSigningKey } from '../../hub/signing.js';
import { formatBytes } from '../output.js';
import { transferProgress } from '../transfer-progress.js';
import { InvalidArgumentError } from '../../errors.js';
import { loadToken } from '../../util/bearer-token.js';

interface PullCliOptions extends GlobalOptions, TrustOptions {
  tag?: string;
  force?: boolean;
  hub?: string;
}

interface PushCliOptions extends GlobalOptions {
  tag?: string;
  file?: string;
  tokenFile?: string;
  level: number;
  signKey?: string;
}

export function registerPull(program: Command): void {
  const pull = program
    .command('pull')
    .description(
      'download a snapshot from a hub (owner/name[@version]) or a pack URL, verify it and unpack it (a diff: its missing ancestors first, found on the hub by content hash)',
    )
    .argument('<ref>', 'owner/name[@version] (resolved through the hub index) or http(s)://…/x.forkd.tar.zst')
    .option('--tag <tag>', 'install under this tag (default: the package name, or the pack’s own tag)')
    .option('--force', 'replace a snapshot with the same tag')
    .option('--hub <url>', 'hub base URL or index URL (env FORKD_HUB_URL)');
  addTrustOptions(pull).action(async (ref: string, _o: unknown, cmd: Command) => {
    const opts = cmd.optsWithGlobals<PullCliOptions>();
    const { engine, out } = makeContext(opts);
    const trust = await trustFromOptions(engine, opts);
    const pulled = await interruptible((signal) =>
      engine.pull({
        ref,
        hub: hubUrl(opts.hub),
        tag: opts.tag,
        force: opts.force,
        trust,
        onProgress: transferProgress(out),
        onNotice: (message) => out.progress(message),
        signal,
      }),
    );
    out.result(
      {
        tag: pulled.tag,
        dir: pulled.dir,
        url: pulled.url,
        sha256: pulled.sha256,
        verified: pulled.verified,
        signer: pulled.signer,
        download_bytes: pulled.downloadBytes,
        resumed_from: pulled.resumedFrom,
        download_ms: pulled.downloadMs,
        unpack_ms: pulled.unpackMs,
        ancestors: pulled.ancestors.map((a) => ({
          tag: a.tag,
          installed: a.installed,
          from: a.from ?? null,
          download_bytes: a.downloadBytes ?? null,
        })),
      },
      () =>
        [
          ...pulled.ancestors.map((a) =>
            a.installed
              ? `ancestor ${a.tag}: ${a.from ? `pulled from ${a.from} (${formatBytes(a.downloadBytes ?? 0)})` : 'installed from the pack'}`
              : `ancestor ${a.tag}: here already (same content hash)`,
          ),
          `pulled ${ref} as snapshot ${pulled.tag}: ${formatBytes(pulled.downloadBytes)} in ${pulled.downloadMs} ms, unpacked in ${pulled.unpackMs} ms`,
          pulled.verified === 'pack'
            ? `verified: pack sha256 ${pulled.sha256} matches the index, and every file its manifest`
            : 'verified: every file against the pack manifest (no published sha256 for the pack)',
          pulled.signer
            ? `signed by trusted key ${pulled.signer}`
            : 'unsigned (installed with --allow-unsigned)',
          `fork it: forkd fork --tag ${pulled.tag} -n 10`,
        ].join('\n'),
    );
  });

  program
    .command('push')
    .description('pack a snapshot and upload it with HTTP PUT (a forkd hub, or a presigned object-store URL)')
    .argument('<url>', 'e.g. http://hub:7070/packs/<owner>/<name>/<version>.forkd.tar.zst')
    .option('--tag <tag>', 'snapshot to pack and push')
    .option('--file <pack>', 'push an existing .forkd.tar.zst instead')
    .option(
      '--token-file <file>',
      'bearer token for the hub (env FORKD_HUB_TOKEN); not needed for presigned URLs',
    )
    .option('--level <n>', 'zstd level when packing', intOption('--level', 1, 19), 9)
    .option('--sign-key <keyfile>', 'sign the pack made from --tag with this ed25519 private key')
    .action(async (target: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<PushCliOptions>();
      const { engine, out } = makeContext(opts);
      if ((opts.tag === undefined) === (opts.file === undefined)) {
        throw new InvalidArgumentError('pass exactly one of --tag and --file', 'tag', {
          hint: 'forkd push --tag python-numpy URL',
        });
      }
      let url: URL;
      try {
        url = new URL(target);
      } catch {
        throw new InvalidArgumentError(`invalid URL ${JSON.stringify(target)}`, 'url');
      }
      const token = opts.tokenFile
        ? await loadToken(opts.tokenFile)
        : process.env.FORKD_HUB_TOKEN || undefined;
      let path = opts.file ? resolve(opts.file) : '';
      const temporary = opts.tag !== undefined;
      try {
        const tag = opts.tag;
        if (tag !== undefined) {
          const dir = join(engine.dataDir.cacheDir, 'packs');
          await mkdir(dir, { recursive: true });
          path = join(dir, `${tag}-${randomBytes(4).toString('hex')}.forkd.tar.zst`);
          out.progress(`packing snapshot ${tag}`);
          const signKey = opts.signKey ? await loadSigningKey(resolve(opts.signKey)) : undefined;
          const output = path;
          await interruptible((signal) =>
            engine.pack(tag, {
              output,
              level: opts.level,
              signKey,
              onProgress: transferProgress(out),
              signal,
            }),
          );
        }
        out.progress(`uploading to ${redact(url)}`);
        const sent = await uploadFile({ url, path, token, onProgress: transferProgress(out) });
        let answer: unknown = null;
        try {
          answer = sent.body ? JSON.parse(sent.body) : null;
        } catch {
          answer = null; // object stores answer with XML or nothing
        }
        out.result(
          { url: redact(url), status: sent.status, bytes: sent.bytes, upload_ms: sent.ms, answer },
          () => `pushed ${formatBytes(sent.bytes)} to ${redact(url)} in ${sent.ms} ms (HTTP ${sent.status})`,
        );
      } finally {
        if (temporary && path) await rm(path, { force: true });
      }
    });
}
