// Packs what tools/gpu-bench.sh needs on a lent GPU machine (no Node there,
// 64 MiB carried at most) into carry/gpu/ (git-ignored): the `fisher`
// command and the two bench scripts as self-contained bundles (every
// dependency inlined but Dawn's native `webgpu`), Dawn's linux-x64 build,
// and this Node binary, xz-compressed. Usage: node tools/gpu-pack.mjs
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'carry/gpu');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  loader: { '.wgsl': 'text' },
  external: ['webgpu'],
  logLevel: 'warning',
  // Bundled CommonJS dependencies call require(): give ESM one.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};
await build({ ...common, entryPoints: [join(root, 'src/cli/main.ts')], outfile: join(out, 'cli.mjs') });
await build({ ...common, entryPoints: [join(root, 'bench/cores.ts')], outfile: join(out, 'cores.mjs') });
await build({ ...common, entryPoints: [join(root, 'bench/cholesky.ts')], outfile: join(out, 'cholesky.mjs') });
// Dawn: its package without the other platforms' builds.
const dawn = join(out, 'webgpu');
cpSync(join(root, 'node_modules/webgpu'), dawn, { recursive: true, filter: (src) => !/dist\/(darwin|win32|linux-arm64)/.test(src) });
execFileSync('tar', ['-cJf', join(out, 'webgpu.tar.xz'), '-C', out, 'webgpu']);
rmSync(dawn, { recursive: true });
execFileSync('sh', ['-c', `xz -T0 -c "${process.execPath}" > "${join(out, 'node.xz')}"`]);
const mib = (f) => (statSync(join(out, f)).size / 2 ** 20).toFixed(1);
console.log(`carry/gpu: cli.mjs ${mib('cli.mjs')} MiB, node.xz ${mib('node.xz')} MiB, webgpu.tar.xz ${mib('webgpu.tar.xz')} MiB`);
