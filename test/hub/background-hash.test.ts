// The hashing worker's queue is bounded: a producer faster than sha256 waits
// instead of queueing the whole pack in memory, and the digest is unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { BackgroundHasher, MAX_QUEUED_BYTES } from '../../src/hub/background-hash.js';

test('update() waits while the worker is behind, so at most MAX_QUEUED_BYTES (plus one chunk) are queued', async () => {
  const hasher = new BackgroundHasher();
  const chunk = randomBytes(1024 * 1024);
  const expected = createHash('sha256');
  let peak = 0;
  try {
    for (let i = 0; i < 256; i++) {
      await hasher.update(chunk);
      expected.update(chunk);
      peak = Math.max(peak, hasher.pendingBytes);
    }
    hasher.zeros(12345);
    expected.update(Buffer.alloc(12345));
    assert.equal(await hasher.finish(), expected.digest('hex'));
  } finally {
    await hasher.close();
  }
  assert.ok(peak <= MAX_QUEUED_BYTES + chunk.length, `${peak} bytes were queued`);
});
