/**
 * The matmul cores side by side on this adapter: each configuration's score
 * (the geometric mean of the forward, squared-gradient and Gram products'
 * GFLOP/s, src/engine/autotune.ts) on the tuner's quick and full problems.
 * Prints a line per configuration and writes the numbers to the JSON file
 * named by the first argument.
 *
 *   node tools/run-ts.mjs bench/cores.ts bench/results/cores.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { scoreShape } from '../src/engine/autotune.js';
import { openDevice } from '../src/gpu/device.js';
import { describeMatmulConfig, matmulConfigProblem, type MatmulConfig } from '../src/kernels/matmul.js';

const out = process.argv[2] ?? 'bench/results/cores.json';
const gpu = await openDevice();
const configs: MatmulConfig[] = [
  { tm: 8, tn: 8, wgM: 8, wgN: 8, core: 'plain' },
  { tm: 32, tn: 8, wgM: 8, wgN: 8, core: 'subgroup' },
  { tm: 32, tn: 8, wgM: 4, wgN: 8, core: 'subgroup' },
  { tm: 8, tn: 8, wgM: 8, wgN: 8, core: 'shared' },
  { tm: 4, tn: 4, wgM: 16, wgN: 16, core: 'shared' },
  { tm: 8, tn: 4, wgM: 8, wgN: 16, core: 'shared' },
];
const rows: Record<string, unknown>[] = [];
for (const config of configs) {
  const problem = matmulConfigProblem(config, gpu);
  if (problem) {
    console.log(`${describeMatmulConfig(config)}: skipped (${problem})`);
    continue;
  }
  const quick = await scoreShape(gpu, config, 'quick');
  const full = await scoreShape(gpu, config, 'full');
  rows.push({ config, quick, full });
  console.log(`${describeMatmulConfig(config)} (${config.core}): quick ${quick.toFixed(1)} GFLOP/s, full ${full.toFixed(1)} GFLOP/s`);
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ device: gpu.describe(), date: new Date().toISOString(), rows }, null, 2));
gpu.dispose();
