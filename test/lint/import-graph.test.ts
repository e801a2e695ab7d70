// Lint enforces the component graph of ARCHITECTURE.md (the table in
// eslint.config.js): an import along a forbidden edge is an error, an allowed
// one is not. Probes are linted as text under a path in src/, so nothing is
// written into the work tree.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint } from 'eslint';
import tseslint from 'typescript-eslint';

/** The repository root: the first folder above this (compiled) file with a package.json. */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    assert.notEqual(up, dir, 'no package.json above the test file');
    dir = up;
  }
  return dir;
}

const root = repoRoot();
const RULE = 'forkd/import-graph';
// The probes are not in the TypeScript project, so type-aware rules are off for
// them; the import rule needs no types.
const eslint = new ESLint({
  cwd: root,
  overrideConfig: {
    files: ['src/**/__lint_probe*.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
});

/** The import-rule messages for `text` linted as if it were `relPath`. */
async function importErrors(relPath: string, text: string): Promise<string[]> {
  const [result] = await eslint.lintText(text, { filePath: join(root, relPath) });
  assert.ok(result, `linted ${relPath}`);
  const fatal = result.messages.filter((m) => m.fatal);
  assert.deepEqual(fatal, [], `${relPath} parses`);
  return result.messages.filter((m) => m.ruleId === RULE).map((m) => m.message);
}

const forbidden: [from: string, spec: string, to: string][] = [
  ['src/hub/__lint_probe.ts', '../engine/engine.js', 'engine'],
  ['src/daemon/routes/__lint_probe.ts', '../../cli/main.js', 'cli'],
  ['src/util/__lint_probe.ts', '../engine/engine.js', 'engine'],
  ['src/sdk/__lint_probe.ts', '../engine/index.js', 'engine'],
  ['src/sdk/__lint_probe.ts', '../errors.js', 'errors'],
  ['src/vmm/__lint_probe.ts', '../engine/engine.js', 'engine'],
  ['src/mcp/__lint_probe.ts', '../daemon/server.js', 'daemon'],
];

for (const [from, spec, to] of forbidden) {
  test(`${from} importing ${spec} is a lint error`, async () => {
    for (const text of [
      `import { x } from '${spec}';\nexport const y = x;\n`,
      `export { x } from '${spec}';\n`,
      `export const load = () => import('${spec}');\n`,
      `export type T = import('${spec}').X;\n`,
    ]) {
      const errors = await importErrors(from, text);
      assert.equal(errors.length, 1, `${text}: ${errors.join('; ')}`);
      assert.match(errors[0]!, new RegExp(`may not import src/${to} `));
    }
  });
}

test('allowed edges, own files and nested folders pass', async () => {
  const allowed: [from: string, text: string][] = [
    [
      'src/engine/__lint_probe.ts',
      "import { buildQemuArgs } from '../vmm/machine.js';\nexport const f = buildQemuArgs;\n",
    ],
    [
      'src/engine/agent/__lint_probe.ts',
      "import { Engine } from '../engine.js';\nimport { QmpClient } from '../../vmm/qmp.js';\nexport const e = [Engine, QmpClient];\n",
    ],
    [
      'src/sdk/__lint_probe.ts',
      "import { x } from './errors.js';\nimport type { Y } from '../api/schemas.js';\nexport const z: Y = x;\n",
    ],
    [
      'src/cli/commands/__lint_probe.ts',
      "import { Engine } from '../../engine/engine.js';\nexport const e = Engine;\n",
    ],
  ];
  for (const [from, text] of allowed) assert.deepEqual(await importErrors(from, text), [], from);
});

test('a folder missing from the table is an error until it is added', async () => {
  const errors = await importErrors('src/newthing/__lint_probe.ts', 'export const x = 1;\n');
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /src\/newthing is not in the import table/);
});
