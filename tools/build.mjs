// Builds the package: dist/index.js (library), dist/cli.js (the `fisher`
// command), dist/peer-process.js (a peer's whole process, for `fisher
// bench`) and dist/types (declarations). WGSL files are embedded as text, so
// the built package carries the very files the tests load.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  loader: { '.wgsl': 'text' },
  // Runtime dependencies stay packages, not copies.
  packages: 'external',
  logLevel: 'warning',
};

/** Builds into `outDir` (default dist/); tests build a private copy elsewhere. */
export async function buildAll({ declarations = true, outDir = join(root, 'dist') } = {}) {
  rmSync(outDir, { recursive: true, force: true });
  await build({ ...common, entryPoints: [join(root, 'src/index.ts')], outfile: join(outDir, 'index.js') });
  await build({
    ...common,
    entryPoints: [join(root, 'src/cli/main.ts')],
    outfile: join(outDir, 'cli.js'),
    banner: { js: '#!/usr/bin/env node' },
  });
  chmodSync(join(outDir, 'cli.js'), 0o755);
  // A peer's whole process for `fisher bench --whole-process`: its own entry, so it does not load the command line.
  await build({ ...common, entryPoints: [join(root, 'src/bench/peer-process.ts')], outfile: join(outDir, 'peer-process.js') });
  if (declarations) {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await buildAll({ declarations: !process.argv.includes('--no-types') });
}
