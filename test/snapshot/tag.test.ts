import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertValidTag, isValidTag } from '../../src/snapshot/tag.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { DataDir } from '../../src/snapshot/data-dir.js';

test('valid tags pass', () => {
  for (const tag of ['a', 'python-numpy', 'A_b-9', 'x'.repeat(64)]) assert.ok(isValidTag(tag), tag);
});

test('traversal, separators, empty and overlong tags are rejected before any path is built', () => {
  const data = new DataDir('/tmp/forkd-tag-test');
  for (const tag of ['', '..', '../etc', 'a/b', '/abs', 'a b', 'x'.repeat(65), 'é', 'a\0b', '.hidden']) {
    assert.ok(!isValidTag(tag), JSON.stringify(tag));
    assert.throws(() => data.snapshotDir(tag), InvalidArgumentError);
  }
  assert.throws(() => assertValidTag(42), /invalid tag 42/);
});

test('the error names the rule so the user can fix it', () => {
  assert.throws(
    () => assertValidTag('../x'),
    (err: InvalidArgumentError) => {
      assert.equal(err.code, 'invalid_argument');
      assert.match(err.oneLine(), /1-64 characters/);
      return true;
    },
  );
});
