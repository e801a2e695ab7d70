// `forkd keygen`: an ed25519 key pair for signing packs (`forkd pack
// --sign-key`), and `--trust` to add a public key to this data dir's trusted
// keys, which `forkd pull` and `forkd unpack` check signatures against.
import type { Command } from 'commander';
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { AlreadyExistsError, InvalidArgumentError } from '../../errors.js';
import { generateSigningKey, keyIdOf, loadPublicKey, TRUSTED_KEYS_DIR } from '../../hub/signing.js';
import { makeContext, type GlobalOptions } from '../context.js';

interface KeygenOptions extends GlobalOptions {
  name: string;
  out: string;
  force?: boolean;
}

const KEY_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      'make an ed25519 key pair for signing packs: NAME.key (keep it secret) and NAME.pub (share it)',
    )
    .option('--name <name>', 'file name for the pair', 'forkd-signing')
    .option('--out <dir>', 'directory to write them to', '.')
    .option('--force', 'overwrite an existing pair')
    .action(async (_o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<KeygenOptions>();
      const { out } = makeContext(opts);
      if (!KEY_NAME.test(opts.name)) {
        throw new InvalidArgumentError(`invalid key name ${JSON.stringify(opts.name)}`, 'name', {
          hint: 'use 1-64 characters from A-Z a-z 0-9 _ . -',
        });
      }
      const dir = resolve(opts.out);
      await mkdir(dir, { recursive: true });
      const key = generateSigningKey();
      const privatePath = join(dir, `${opts.name}.key`);
      const publicPath = join(dir, `${opts.name}.pub`);
      const flag = opts.force ? 'w' : 'wx';
      try {
        await writeFile(privatePath, key.privatePem, { mode: 0o600, flag });
        await writeFile(publicPath, key.publicPem, { mode: 0o644, flag });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        throw new AlreadyExistsError(
          `a key named ${opts.name} already exists in ${dir}`,
          { kind: 'key', name: opts.name },
          { hint: 'pass --force to replace it, or --name another' },
        );
      }
      out.result({ key_id: key.keyId, private_key: privatePath, public_key: publicPath }, () =>
        [
          `key ${key.keyId}`,
          `  sign packs with:   forkd pack --sign-key ${privatePath} …`,
          `  share and trust:   forkd trust ${publicPath}   (or forkd pull --trust-key ${publicPath} …)`,
        ].join('\n'),
      );
    });

  program
    .command('trust')
    .description(`trust a publisher's public key: packs it signed pull and unpack without --trust-key`)
    .argument('<pubfile>', 'the .pub file `forkd keygen` wrote')
    .action(async (pubfile: string, _o: unknown, cmd: Command) => {
      const opts = cmd.optsWithGlobals<GlobalOptions>();
      const { engine, out } = makeContext(opts);
      const key = await loadPublicKey(resolve(pubfile));
      const keyId = keyIdOf(key);
      const dir = join(engine.dataDir.root, TRUSTED_KEYS_DIR);
      await mkdir(dir, { recursive: true });
      const target = join(dir, `${keyId}.pub`);
      await copyFile(resolve(pubfile), target);
      out.result(
        { key_id: keyId, path: target },
        () => `trusting key ${keyId} (from ${basename(pubfile)}) in ${dir}`,
      );
    });
}
