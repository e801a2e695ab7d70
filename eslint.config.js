// Lint: type-aware rules (floating promises kill process supervision) and the
// one-way dependency rule between components (see ARCHITECTURE.md).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const engineOnly = [
  '**/engine/**',
  '**/vmm/**',
  '**/image/**',
  '**/snapshot/**',
  '**/hub/**',
  '**/daemon/**',
  '**/cli/**',
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'guest/**', 'bench/results/**'] },
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
    files: ['src/sdk/**', 'src/mcp/**'],
    rules: { 'no-restricted-imports': ['error', { patterns: engineOnly }] },
  },
  {
    files: ['src/engine/**', 'src/vmm/**', 'src/image/**', 'src/snapshot/**', 'src/hub/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['**/daemon/**', '**/cli/**', '**/sdk/**', '**/mcp/**'] },
      ],
    },
  },
  {
    files: ['src/vmm/**', 'src/image/**', 'src/snapshot/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: ['**/engine/**', '**/daemon/**', '**/cli/**', '**/sdk/**', '**/mcp/**'] },
      ],
    },
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
  { files: ['scripts/**/*.mjs'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
