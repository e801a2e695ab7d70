// Signed packs. A publisher signs the pack manifest (the exact bytes of the
// first entry, which list every file's size and sha256) with an ed25519 key;
// the signature travels as the pack's second entry and in the hub index. An
// unpack checks it against the keys it trusts (--trust-key files and
// <data-dir>/trusted-keys/*.pub) before a single file is written, so a
// verified manifest and the per-file hashes vouch for every byte installed.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Type, { type Static } from 'typebox';
import { Value } from 'typebox/value';
import { InvalidArgumentError, NotFoundError, UntrustedPackError } from '../errors.js';

/** The pack entry that carries the signature, right after the manifest. */
export const PACK_SIGNATURE_ENTRY = 'forkd-pack.sig';
/** Where a data dir keeps the public keys it trusts. */
export const TRUSTED_KEYS_DIR = 'trusted-keys';

const KEY_ID = '^[0-9a-f]{16}$';

export const PackSignature = Type.Object({
  format: Type.Literal('forkd-pack-signature'),
  algorithm: Type.Literal('ed25519'),
  /** The first 16 hex digits of the sha256 of the raw 32-byte public key. */
  key_id: Type.String({ pattern: KEY_ID }),
  /** base64 of the ed25519 signature over the manifest entry's bytes. */
  signature: Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' }),
});
export type PackSignature = Static<typeof PackSignature>;

/** Which signers an unpack accepts. */
export interface TrustPolicy {
  /** Trusted public keys by key id. */
  keys: ReadonlyMap<string, KeyObject>;
  /** Install unsigned packs (a signed pack must still verify against a trusted key). */
  allowUnsigned: boolean;
}

function rawPublicKey(key: KeyObject): Buffer {
  // An ed25519 SPKI DER is a fixed 12-byte prefix and the 32-byte key.
  return key.export({ type: 'spki', format: 'der' }).subarray(-32);
}

export function keyIdOf(key: KeyObject): string {
  return createHash('sha256').update(rawPublicKey(key)).digest('hex').slice(0, 16);
}

/** A new signing key: PEM texts (PKCS#8 private, SPKI public) and its id. */
export function generateSigningKey(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

async function readKeyFile(path: string, what: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => {
    throw new NotFoundError(
      `${what} ${path} not found`,
      { kind: 'file', name: path },
      {
        hint: 'make a key pair with `forkd keygen`',
      },
    );
  });
}

const KEY_FILES = {
  private: { what: 'signing key', option: 'sign-key', file: '.key', parse: createPrivateKey },
  public: { what: 'public key', option: 'trust-key', file: '.pub', parse: createPublicKey },
} as const;

/** An ed25519 key from a PEM file: `forkd keygen`'s .key (private) or .pub (public). */
async function loadKey(path: string, kind: keyof typeof KEY_FILES): Promise<KeyObject> {
  const spec = KEY_FILES[kind];
  const pem = await readKeyFile(path, spec.what);
  try {
    const key = spec.parse(pem);
    if (key.asymmetricKeyType !== 'ed25519') throw new Error(`a ${key.asymmetricKeyType} key`);
    return key;
  } catch (err) {
    throw new InvalidArgumentError(
      `${path} is not an ed25519 ${kind} key (${(err as Error).message})`,
      spec.option,
      { hint: `pass the ${spec.file} file that \`forkd keygen\` wrote` },
    );
  }
}

export function loadSigningKey(path: string): Promise<KeyObject> {
  return loadKey(path, 'private');
}

export function loadPublicKey(path: string): Promise<KeyObject> {
  return loadKey(path, 'public');
}

/** Trusted keys: every `*.pub` in the data dir's trusted-keys dir, plus `extraKeyFiles`. */
export async function loadTrustPolicy(
  dataDirRoot: string,
  extraKeyFiles: readonly string[],
  allowUnsigned: boolean,
): Promise<TrustPolicy> {
  const keys = new Map<string, KeyObject>();
  const dir = join(dataDirRoot, TRUSTED_KEYS_DIR);
  const names = await readdir(dir).catch(() => [] as string[]);
  const files = [...names.filter((n) => n.endsWith('.pub')).map((n) => join(dir, n)), ...extraKeyFiles];
  for (const file of files) {
    const key = await loadPublicKey(file);
    keys.set(keyIdOf(key), key);
  }
  return { keys, allowUnsigned };
}

export function signManifest(manifestBytes: Buffer, key: KeyObject): PackSignature {
  return {
    format: 'forkd-pack-signature',
    algorithm: 'ed25519',
    key_id: keyIdOf(createPublicKey(key)),
    signature: sign(null, manifestBytes, key).toString('base64'),
  };
}

/** Parses a signature entry; null when it is not one. */
export function parsePackSignature(value: unknown): PackSignature | null {
  return Value.Check(PackSignature, value) ? value : null;
}

/** The refusal of a pack signed by a key this host does not trust (before or after the download). */
export function untrustedSigner(source: string, keyId: string): UntrustedPackError {
  return new UntrustedPackError(`${source} is signed by key ${keyId}, which is not trusted`, keyId, {
    hint: `pass --trust-key PUBFILE with the publisher's ${keyId} key, or add it with \`forkd trust PUBFILE\` (into <data-dir>/${TRUSTED_KEYS_DIR}/)`,
  });
}

/**
 * Decides whether a pack may be installed: its signature must verify against
 * a trusted key, or (unsigned) the policy must allow unsigned packs. Returns
 * the signer's key id (null for an accepted unsigned pack).
 */
export function checkPackTrust(
  manifestBytes: Buffer,
  signature: PackSignature | null,
  trust: TrustPolicy,
  source: string,
): string | null {
  if (!signature) {
    if (trust.allowUnsigned) return null;
    throw new UntrustedPackError(`${source} is not signed`, null, {
      hint: 'get a signed pack, or pass --allow-unsigned if you trust where it came from',
    });
  }
  const key = trust.keys.get(signature.key_id);
  if (!key) throw untrustedSigner(source, signature.key_id);
  if (!verify(null, manifestBytes, key, Buffer.from(signature.signature, 'base64'))) {
    throw new UntrustedPackError(
      `${source}: its signature by key ${signature.key_id} does not match its manifest`,
      signature.key_id,
      { hint: 'the pack was altered after it was signed; get it again from its publisher' },
    );
  }
  return signature.key_id;
}
