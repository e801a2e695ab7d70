// Pack signatures (pure logic): a signature verifies against its key only, a
// changed manifest or an unknown key is refused naming the key, and an
// unsigned pack passes only when the policy allows it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UntrustedPackError } from '../../src/errors.js';
import {
  checkPackTrust,
  generateSigningKey,
  keyIdOf,
  loadTrustPolicy,
  parsePackSignature,
  signManifest,
  TRUSTED_KEYS_DIR,
  type TrustPolicy,
} from '../../src/hub/signing.js';

const manifest = Buffer.from('{"format":"forkd-pack","files":[]}\n');

function keyPair() {
  const k = generateSigningKey();
  return { ...k, private: createPrivateKey(k.privatePem), public: createPublicKey(k.publicPem) };
}

function trusting(...keys: ReturnType<typeof keyPair>[]): TrustPolicy {
  return { keys: new Map(keys.map((k) => [k.keyId, k.public])), allowUnsigned: false };
}

test('a signature verifies against its trusted key and names the signer', () => {
  const k = keyPair();
  assert.equal(keyIdOf(k.public), k.keyId);
  assert.match(k.keyId, /^[0-9a-f]{16}$/);
  const sig = signManifest(manifest, k.private);
  assert.deepEqual(parsePackSignature(JSON.parse(JSON.stringify(sig))), sig);
  assert.equal(checkPackTrust(manifest, sig, trusting(k), 'p'), k.keyId);
});

test('a changed manifest, an untrusted key and a forged key id are refused, naming the key', () => {
  const k = keyPair();
  const other = keyPair();
  const sig = signManifest(manifest, k.private);
  const changed = Buffer.from(manifest.toString().replace('[]', '[1]'));
  assert.throws(
    () => checkPackTrust(changed, sig, trusting(k), 'p'),
    (err: unknown) => err instanceof UntrustedPackError && /does not match its manifest/.test(err.message),
  );
  assert.throws(
    () => checkPackTrust(manifest, sig, trusting(other), 'p'),
    (err: unknown) =>
      err instanceof UntrustedPackError && err.keyId === k.keyId && err.message.includes(`key ${k.keyId}`),
  );
  // Signed by `other` but claiming to be `k`: verification with k's key fails.
  const forged = { ...signManifest(manifest, other.private), key_id: k.keyId };
  assert.throws(() => checkPackTrust(manifest, forged, trusting(k), 'p'), UntrustedPackError);
});

test('an unsigned pack passes only when the policy allows unsigned packs', () => {
  assert.throws(
    () => checkPackTrust(manifest, null, trusting(), 'p'),
    (err: unknown) =>
      err instanceof UntrustedPackError &&
      /not signed/.test(err.oneLine()) &&
      /--allow-unsigned/.test(err.oneLine()),
  );
  assert.equal(checkPackTrust(manifest, null, { keys: new Map(), allowUnsigned: true }, 'p'), null);
});

test('malformed signature entries are not signatures', () => {
  assert.equal(parsePackSignature({ format: 'forkd-pack-signature', algorithm: 'rsa' }), null);
  assert.equal(parsePackSignature('x'), null);
});

test('trusted keys come from the data dir and from extra files; a bad key file is named', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-trust-'));
  try {
    const a = keyPair();
    const b = keyPair();
    await mkdir(join(dir, TRUSTED_KEYS_DIR));
    await writeFile(join(dir, TRUSTED_KEYS_DIR, 'a.pub'), a.publicPem);
    await writeFile(join(dir, 'b.pub'), b.publicPem);
    const policy = await loadTrustPolicy(dir, [join(dir, 'b.pub')], false);
    assert.deepEqual([...policy.keys.keys()].sort(), [a.keyId, b.keyId].sort());
    await writeFile(join(dir, 'bad.pub'), 'not a key');
    await assert.rejects(
      loadTrustPolicy(dir, [join(dir, 'bad.pub')], false),
      /bad\.pub is not an ed25519 public key/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
