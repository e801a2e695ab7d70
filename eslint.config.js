// Lint: type-aware rules (floating promises kill process supervision) and the
// one-way dependency graph between components (see ARCHITECTURE.md).
import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The component graph, folder by folder under src/: a component may import its
// own files (nested folders included) and the components listed here, nothing
// else in src/. `errors` and `version` are src/errors.ts and src/version.ts. A
// folder or top-level file missing from this table is itself an error.
const allowedImports = {
  api: [], // wire schemas, shared by daemon and sdk
  errors: [],
  version: [],
  util: ['errors'],
  vmm: ['errors', 'util'],
  image: ['errors', 'util'],
  snapshot: ['errors', 'util', 'vmm'],
  hub: ['errors', 'snapshot', 'util', 'version', 'vmm'],
  engine: ['errors', 'hub', 'image', 'snapshot', 'util', 'version', 'vmm'],
  daemon: ['api', 'engine', 'errors', 'snapshot', 'util', 'version'],
  sdk: ['api'], // an HTTP client: never the engine
  mcp: ['sdk'],
  cli: ['daemon', 'engine', 'errors', 'hub', 'image', 'mcp', 'sdk', 'snapshot', 'util', 'version', 'vmm'],
};

const srcDir = path.join(import.meta.dirname, 'src');

/** The component of a path: its top folder under src/, or a top-level file's name; undefined outside src/. */
function component(file) {
  const rel = path.relative(srcDir, file);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  const [top, ...rest] = rel.split(path.sep);
  return rest.length > 0 ? top : top.replace(/\.[cm]?[jt]s$/, '');
}

// Resolves each relative specifier against the importing file, so a nested
// folder (src/engine/agent) counts as its top folder and src/errors.ts is told
// apart from src/sdk/errors.ts: string patterns in no-restricted-imports cannot.
const importGraph = {
  meta: {
    type: 'problem',
    schema: [{ type: 'object', additionalProperties: { type: 'array', items: { type: 'string' } } }],
    messages: {
      forbidden:
        "src/{{from}} may not import src/{{to}} ('{{spec}}'); it may import: {{allowed}} (ARCHITECTURE.md)",
      unknown: 'src/{{from}} is not in the import table of eslint.config.js: add it with what it may import',
    },
  },
  create(context) {
    const table = context.options[0] ?? {};
    const from = component(context.filename);
    if (from === undefined) return {};
    const allowed = table[from];
    if (allowed === undefined) {
      return { Program: (node) => context.report({ node, messageId: 'unknown', data: { from } }) };
    }
    const check = (source) => {
      const spec = source?.type === 'Literal' ? source.value : undefined;
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const to = component(path.resolve(path.dirname(context.filename), spec));
      if (to === undefined || to === from || allowed.includes(to)) return;
      context.report({
        node: source,
        messageId: 'forbidden',
        data: { from, to, spec, allowed: allowed.join(', ') || 'nothing' },
      });
    };
    return {
      ImportDeclaration: (node) => check(node.source),
      ExportNamedDeclaration: (node) => check(node.source),
      ExportAllDeclaration: (node) => check(node.source),
      ImportExpression: (node) => check(node.source),
      TSImportType: (node) => check(node.argument?.literal),
      TSExternalModuleReference: (node) => check(node.expression),
    };
  },
};

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'guest/**', 'bench/results/**', '.forkd-test/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'before', 'after'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      // Fastify handlers are async by contract, with or without an await.
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    files: ['src/**/*.ts'],
    plugins: { forkd: { rules: { 'import-graph': importGraph } } },
    rules: { 'forkd/import-graph': ['error', allowedImports] },
  },
  {
    // One launcher starts every host program (and registers it to be killed on exit).
    files: ['src/**/*.ts'],
    ignores: ['src/util/launcher.ts'],
    rules: {
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          paths: ['node:child_process', 'child_process'].map((name) => ({
            name,
            message: 'start host programs through src/util/launcher.ts',
            allowTypeImports: true,
          })),
        },
      ],
    },
  },
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  {
    files: ['scripts/**/*.mjs', 'examples/**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', fetch: 'readonly' } },
  },
);
