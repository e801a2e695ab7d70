// The SDK is an HTTP client only: its files import nothing outside src/sdk,
// and the entry point's import graph reaches no Node built-in, so it can
// run in browsers, Deno, Bun and workers (the MCP SDK keeps the same rule).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// This file runs from dist/test/sdk/; the repository root is three levels up.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const IMPORT =
  /(?:^|[^\w.])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[^\w.])import\s*\(?\s*['"]([^'"]+)['"]/gm;

/** Module specifiers imported or re-exported by `text` (line comments ignored). */
function scan(text: string): string[] {
  return [...text.replace(/^\s*\/\/.*$/gm, '').matchAll(IMPORT)].map((m) => (m[1] ?? m[2])!);
}

/**
 * Type-only imports of the shared wire schemas (src/api) and typebox's types:
 * erased at compile time (the compiled files are checked too), so the SDK
 * still loads only its own files.
 */
function isWireTypeImport(text: string, spec: string): boolean {
  if (!spec.startsWith('../api/') && spec !== 'typebox') return false;
  const quoted = spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(`^\\s*import\\s+type\\s[^;]*from\\s*['"]${quoted}['"]`, 'm').test(text);
}

function specifiers(file: string): string[] {
  return scan(readFileSync(file, 'utf8'));
}

function isBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || builtinModules.includes(spec);
}

for (const [label, dir, ext] of [
  ['source', join(root, 'src/sdk'), '.ts'],
  ['compiled', join(root, 'dist/src/sdk'), '.js'],
] as const) {
  test(`every ${label} SDK file imports only src/sdk (or Node built-ins)`, () => {
    const files = readdirSync(dir).filter((f) => f.endsWith(ext) && !f.endsWith('.d.ts'));
    assert.ok(files.includes(`index${ext}`), `found the SDK ${label} in ${dir}`);
    for (const file of files) {
      const text = readFileSync(join(dir, file), 'utf8');
      for (const spec of specifiers(join(dir, file))) {
        if (isBuiltin(spec) || isWireTypeImport(text, spec)) continue;
        assert.ok(spec.startsWith('./'), `${file} imports ${spec}: the SDK may import only its own files`);
        const target = resolve(dir, spec.replace(/\.js$/, ext));
        assert.equal(dirname(target), dir, `${file} imports ${spec}, outside src/sdk`);
        assert.ok(existsSync(target), `${file} imports ${spec}, which does not exist`);
      }
    }
  });

  test(`the ${label} SDK entry pulls in no Node-only module`, () => {
    const seen = new Set<string>();
    const pending = [`index${ext}`];
    while (pending.length) {
      const file = pending.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      for (const spec of specifiers(join(dir, file))) {
        assert.ok(!isBuiltin(spec), `${file} imports the Node built-in ${spec}`);
        if (spec.startsWith('./')) pending.push(spec.slice(2).replace(/\.js$/, ext));
      }
    }
    assert.ok(seen.size > 3, `walked the entry's graph: ${[...seen].join(', ')}`);
  });
}

test('the import scanner sees static, re-export, type and dynamic imports', () => {
  const text = [
    "import { a } from './a.js';",
    "import type { B } from '../engine/index.js';",
    "export { c } from 'node:fs';",
    "const d = await import('../daemon/server.js');",
    "import './side-effect.js';",
    '// import { e } from "commented-out";',
  ].join('\n');
  assert.deepEqual(scan(text), [
    './a.js',
    '../engine/index.js',
    'node:fs',
    '../daemon/server.js',
    './side-effect.js',
  ]);
});
