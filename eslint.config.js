// One lint configuration for the whole tree; `npm test` runs it with
// --max-warnings 0, so a warning fails the gate like an error.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'results/', 'carry/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Dependency direction of DESIGN.md §2: nothing inside imports the public entry.
    files: ['src/**/*.ts'],
    ignores: ['src/index.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/index.js', '../index'], message: 'src/index.ts is the public entry; import the module that owns the thing.' }] }],
    },
  },
);
