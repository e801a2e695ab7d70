// A recipe file, built and snapshotted for real (tiny guest tooling, the
// python-numpy package set so the bootstrapped tree is the cached one): its
// files, npm packages and warm-up are in every child, and its readiness check
// held the freeze back until it passed. A failing warm-up step, an npm
// package or a Debian package that does not exist each fail with one line
// naming it, leaving no snapshot and no image behind.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../../src/engine/index.js';
import { InvalidArgumentError } from '../../src/errors.js';
import { loadRecipeFile } from '../../src/image/recipe-file.js';
import { runCli } from '../support/cli.js';
import { inChildOf, runDirEntries, testEngine, TEST_DATA_DIR } from '../support/engine.js';

const TAG = 'test-recipe-file';
let engine: Engine;
let dir: string;

async function recipe(name: string, extra: string): Promise<string> {
  const path = join(dir, `${name}.yaml`);
  await writeFile(
    path,
    `name: ${name}\ndescription: a test recipe\npackages: [python3-numpy]\nruntime: python\nimports: [json]\n${extra}`,
  );
  return path;
}

async function imageDirs(): Promise<string[]> {
  return (await readdir(join(TEST_DATA_DIR, 'images')).catch(() => [] as string[])).filter(
    (n) => !n.startsWith('.'),
  );
}

before(async () => {
  engine = testEngine();
  dir = await mkdtemp(join(tmpdir(), 'forkd-recipe-build-'));
  await mkdir(join(dir, 'files'));
  await writeFile(join(dir, 'files', 'hello.sh'), '#!/bin/sh\necho hello from the recipe\n');
});

after(async () => {
  await engine.store.remove(TAG).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
  assert.deepEqual(runDirEntries(engine), []);
});

void test("a recipe file's files, npm packages and warm-up are in every child, after its readiness check", async () => {
  const path = await recipe(
    'test-recipe-tools',
    [
      'npm: [left-pad@1.3.0]',
      'files:',
      '  - {src: files/hello.sh, dest: /usr/local/bin/hello, mode: "0755"}',
      'warmup:',
      '  - hello > /tmp/warm',
      '  - (sleep 2; touch /tmp/late) > /dev/null 2>&1 &',
      'ready: test -f /tmp/late',
      '',
    ].join('\n'),
  );
  const manifest = await engine.createSnapshot({
    tag: TAG,
    recipe: await loadRecipeFile(path),
    replace: true,
  });
  assert.equal(manifest.image.recipe, 'test-recipe-tools');
  const out = await inChildOf(
    engine,
    TAG,
    'cat /tmp/warm; test -f /tmp/late && echo late; stat -c %a /usr/local/bin/hello; ' +
      'sed -n \'s/.*"version": "\\(.*\\)".*/\\1/p\' /usr/lib/forkd/node_modules/left-pad/package.json',
  );
  assert.equal(out, 'hello from the recipe\nlate\n755\n1.3.0\n');
});

void test('a warm-up step that fails fails the snapshot with its exit status and stderr, leaving nothing', async () => {
  const path = await recipe('test-recipe-badwarm', 'warmup: ["echo cannot start >&2; exit 3"]\n');
  const err = await engine.createSnapshot({ tag: `${TAG}-bad`, recipe: await loadRecipeFile(path) }).then(
    () => assert.fail('snapshotted'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof InvalidArgumentError, String(err));
  assert.match(err.message, /^warm-up step 1 \(echo cannot start >&2; exit 3\) exited 3: cannot start$/);
  assert.equal(await engine.store.exists(`${TAG}-bad`), false);
  assert.deepEqual(runDirEntries(engine), []);
});

void test('an npm or Debian package that does not exist is named, and no image is left', async () => {
  const before = await imageDirs();
  const npm = await recipe('test-recipe-nonpm', 'npm: [forkd-no-such-package-7f3a9c]\n');
  const cli = runCli(['--data-dir', TEST_DATA_DIR, 'image', 'build', npm, '--json']);
  assert.equal(cli.status, 2, cli.stderr);
  const error = JSON.parse(cli.stdout) as { error: string; code: string };
  assert.equal(error.code, 'invalid_argument');
  assert.match(error.error, /npm package forkd-no-such-package-7f3a9c does not exist in the npm registry/);

  const deb = join(dir, 'nodeb.yaml');
  await writeFile(deb, 'name: test-recipe-nodeb\ndescription: x\npackages: [forkd-no-such-package-7f3a9c]\n');
  const debErr = await engine.buildImage(await loadRecipeFile(deb)).then(
    () => assert.fail('built'),
    (e: unknown) => e,
  );
  assert.ok(debErr instanceof InvalidArgumentError, String(debErr));
  assert.match(debErr.message, /^Debian bookworm has no package forkd-no-such-package-7f3a9c$/);
  assert.deepEqual(await imageDirs(), before);
});
