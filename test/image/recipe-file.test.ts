// Recipe files without a VM: a full recipe reads into the Recipe the builder
// takes (paths relative to the file, defaults filled in, files hashed by
// content, not by path); every malformed one is one line naming the file
// and the field.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError } from '../../src/errors.js';
import { isRecipePath, loadRecipeFile } from '../../src/image/recipe-file.js';
import { recipeHashInput } from '../../src/image/recipe-extras.js';
import { contentHash } from '../../src/image/hash.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'forkd-recipe-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const FULL = `# a recipe as a user writes it
name: my-tools
description: git and a script
packages: [git, python3]
npm: [left-pad@1.3.0, "@scope/pkg@^2.0.0"]
files:
  - src: files/hello.sh
    dest: /usr/local/bin/hello
    mode: "0755"
memory_mib: 768
vcpus: 2
runtime: python
imports: [json]
warmup:
  - hello > /tmp/warm
ready: test -f /tmp/warm
warmup_timeout_secs: 60
`;

void test('a recipe file reads into a recipe: relative paths resolved, defaults filled in', () =>
  withDir(async (dir) => {
    await mkdir(join(dir, 'files'));
    await writeFile(join(dir, 'files', 'hello.sh'), '#!/bin/sh\necho hello\n');
    await writeFile(join(dir, 'my.yaml'), FULL);
    const recipe = await loadRecipeFile(join(dir, 'my.yaml'));
    assert.equal(recipe.name, 'my-tools');
    assert.equal(recipe.suite, 'bookworm');
    assert.deepEqual(recipe.packages, ['git', 'python3']);
    assert.deepEqual(recipe.npm, ['left-pad@1.3.0', '@scope/pkg@^2.0.0']);
    assert.deepEqual(recipe.files, [
      { source: join(dir, 'files', 'hello.sh'), dest: '/usr/local/bin/hello', mode: 0o755 },
    ]);
    assert.equal(recipe.memoryMib, 768);
    assert.equal(recipe.vcpus, 2);
    assert.equal(recipe.runtime?.kind, 'python');
    assert.deepEqual(recipe.runtime?.imports, ['json']);
    assert.deepEqual(recipe.warmup, {
      steps: ['hello > /tmp/warm'],
      ready: 'test -f /tmp/warm',
      timeoutMs: 60_000,
    });
    assert.ok(recipe.modules.includes('ext4'), 'a recipe with packages boots from a disk');
    assert.ok(recipe.kernelCmdlineExtra.includes('root=/dev/vda'));

    await writeFile(
      join(dir, 'node.yaml'),
      'name: n\ndescription: x\npackages: [nodejs]\nruntime: node\nimports: [fs]\n',
    );
    const node = await loadRecipeFile(join(dir, 'node.yaml'));
    assert.equal(node.runtime?.kind, 'node');
    assert.deepEqual(node.runtime?.argv, ['node', '/usr/lib/forkd/node_runtime.js']);

    // JSON is YAML too.
    await writeFile(join(dir, 'min.json'), JSON.stringify({ name: 'min', description: 'x' }));
    const min = await loadRecipeFile(join(dir, 'min.json'));
    assert.deepEqual(min.packages, []);
    assert.equal(min.runtime, null);
    assert.equal(min.memoryMib, 256);
  }));

void test("a recipe's image hash follows its files' contents, not where they are", () =>
  withDir(async (dir) => {
    for (const sub of ['a', 'b']) {
      await mkdir(join(dir, sub, 'files'), { recursive: true });
      await writeFile(join(dir, sub, 'files', 'hello.sh'), 'echo same\n');
      await writeFile(join(dir, sub, 'my.yaml'), FULL);
    }
    const hashOf = async (file: string) =>
      contentHash({
        recipe: await recipeHashInput(await loadRecipeFile(file)),
        kernelCmdline: '',
        kernelVersion: '',
        kernelPackageVersion: '',
        files: {},
      });
    const a = await hashOf(join(dir, 'a', 'my.yaml'));
    assert.equal(a, await hashOf(join(dir, 'b', 'my.yaml')), 'moved: same image');
    await writeFile(join(dir, 'b', 'files', 'hello.sh'), 'echo changed\n');
    assert.notEqual(a, await hashOf(join(dir, 'b', 'my.yaml')), 'edited: another image');
  }));

void test('every malformed recipe is one line naming the file and the problem', () =>
  withDir(async (dir) => {
    const cases: Array<[string, RegExp]> = [
      ['name: x\ndescription: y\nsurprise: 1\n', /must not have additional properties|surprise/],
      ['name: Bad_Name\ndescription: y\n', /\/name/],
      ['name: x\ndescription: y\npackages: ["rm -rf /"]\n', /\/packages\/0/],
      ['name: x\ndescription: y\npackages: [git]\nnpm: ["https://evil.example/x.tgz"]\n', /\/npm\/0/],
      ['name: x\ndescription: y\npackages: [git]\nnpm: ["git+ssh://x"]\n', /\/npm\/0/],
      ['name: x\ndescription: y\nnpm: [left-pad]\n', /need a root filesystem/],
      ['name: x\ndescription: y\nruntime: python\n', /need a root filesystem/],
      ['name: x\ndescription: y\npackages: [git]\nruntime: cobol\n', /\/runtime/],
      ['name: x\ndescription: y\npackages: [git]\nimports: [numpy]\n', /imports need a runtime/],
      [
        'name: x\ndescription: y\npackages: [nodejs]\nruntime: browser\nnpm: [left-pad@1.3.0]\n',
        /runtime browser needs the npm package playwright-core/,
      ],
      [
        'name: x\ndescription: y\npackages: [git]\nfiles: [{src: nope, dest: /x}]\n',
        /nope is not a readable regular file/,
      ],
      [
        'name: x\ndescription: y\npackages: [git]\nfiles: [{src: my.yaml, dest: relative}]\n',
        /\/files\/0\/dest/,
      ],
      [
        'name: x\ndescription: y\npackages: [git]\nfiles: [{src: my.yaml, dest: /a/../etc/x}]\n',
        /not a file path in the guest/,
      ],
      ['name: x\ndescription: y\nmemory_mib: 1\n', /\/memory_mib/],
      ['name: [unclosed\n', /is not valid YAML/],
    ];
    for (const [text, message] of cases) {
      await writeFile(join(dir, 'my.yaml'), text);
      const err = await loadRecipeFile(join(dir, 'my.yaml')).then(
        () => assert.fail(`accepted: ${text}`),
        (e: unknown) => e,
      );
      assert.ok(err instanceof InvalidArgumentError, `${text}: ${String(err)}`);
      assert.match(err.message, message, text);
      assert.match(err.message, /my\.yaml/, 'names the file');
      assert.doesNotMatch(err.message, /\n/, 'one line');
    }
    await assert.rejects(
      loadRecipeFile(join(dir, 'missing.yaml')),
      /cannot read recipe file .*missing\.yaml: ENOENT/,
    );
  }));

void test('an --image argument is a file when it has a slash or a recipe extension', () => {
  assert.equal(isRecipePath('python-numpy'), false);
  assert.equal(isRecipePath('./x.yaml'), true);
  assert.equal(isRecipePath('x.yml'), true);
  assert.equal(isRecipePath('x.json'), true);
  assert.equal(isRecipePath('recipes/x'), true);
});
