// Pins the registry index: package references, resolution with useful
// errors, "latest" following the newest publish, and refusing indexes that
// are malformed or from a newer forkd.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CorruptError, InvalidArgumentError, NotFoundError } from '../../src/errors.js';
import {
  emptyIndex,
  indexUrlFor,
  parsePackageRef,
  parseRegistryIndex,
  resolvePackage,
  withVersion,
  type IndexVersion,
} from '../../src/hub/registry-index.js';

const entry = (n: number): IndexVersion => ({
  url: `packs/forkd/python-numpy/${n}.forkd.tar.zst`,
  sha256: String(n).repeat(64).slice(0, 64),
  size_bytes: 1000 + n,
  memory_mib: 512,
  base_image: 'python-numpy@abc',
  created_at: '2026-11-25T00:00:00.000Z',
});

void test('package refs are owner/name with an optional @version that defaults to latest', () => {
  assert.deepEqual(parsePackageRef('forkd/python-numpy'), { name: 'forkd/python-numpy', version: 'latest' });
  assert.deepEqual(parsePackageRef('forkd/python-numpy@1.2'), { name: 'forkd/python-numpy', version: '1.2' });
  for (const bad of ['python-numpy', '../x/y', 'a/b/c', 'Forkd/x', 'a/b@', 'a/b@../x']) {
    assert.throws(() => parsePackageRef(bad), InvalidArgumentError, bad);
  }
});

void test('publishing a version makes it latest; older versions stay resolvable', () => {
  let index = withVersion(emptyIndex(), 'forkd/python-numpy', '1', entry(1), 'numpy warm');
  index = withVersion(index, 'forkd/python-numpy', '2', entry(2), '');
  const ref = (version: string) => ({ name: 'forkd/python-numpy', version });
  assert.equal(resolvePackage(index, ref('latest'), 'hub').sha256, entry(2).sha256);
  assert.equal(resolvePackage(index, ref('latest'), 'hub').version, '2');
  assert.equal(resolvePackage(index, ref('1'), 'hub').url, entry(1).url);
  assert.equal(index.packages['forkd/python-numpy']?.description, 'numpy warm');
  assert.deepEqual(parseRegistryIndex(JSON.parse(JSON.stringify(index)), 'x'), index);
});

void test('resolving a missing package or version names what the hub has', () => {
  const index = withVersion(emptyIndex(), 'forkd/python-numpy', '1', entry(1), '');
  assert.throws(
    () => resolvePackage(index, { name: 'forkd/nodejs', version: 'latest' }, 'hub'),
    (err: unknown) => err instanceof NotFoundError && /forkd\/python-numpy/.test(err.oneLine()),
  );
  assert.throws(
    () => resolvePackage(index, { name: 'forkd/python-numpy', version: '9' }, 'hub'),
    (err: unknown) => err instanceof NotFoundError && /versions: 1, latest/.test(err.oneLine()),
  );
});

void test('malformed indexes and indexes of a newer schema are refused', () => {
  assert.throws(
    () => parseRegistryIndex({ schema_version: 2, packages: {} }, 'i'),
    (err: unknown) => err instanceof CorruptError && /schema 2.*upgrade forkd/.test(err.oneLine()),
  );
  assert.throws(() => parseRegistryIndex({ packages: {} }, 'i'), CorruptError);
  const bad = {
    schema_version: 1,
    packages: { 'a/b': { description: '', versions: { '1': { url: 'x' } } } },
  };
  assert.throws(() => parseRegistryIndex(bad, 'i'), CorruptError);
});

void test('a hub URL names its index: base URLs get /index.json, .json URLs are used as they are', () => {
  assert.equal(indexUrlFor('http://hub:7070').href, 'http://hub:7070/index.json');
  assert.equal(indexUrlFor('http://hub:7070/forkd/').href, 'http://hub:7070/forkd/index.json');
  assert.equal(indexUrlFor('https://cdn.example/r/idx.json').href, 'https://cdn.example/r/idx.json');
  assert.throws(() => indexUrlFor('ftp://hub/x'), InvalidArgumentError);
  assert.throws(() => indexUrlFor('not a url'), InvalidArgumentError);
});
