/**
 * The sweep behind the EWC demo's defaults: for each optimiser setting and
 * epoch count, run `none` once and `l2` and `ewc` at several strengths, and
 * check the demo's criteria (after the last task: EWC's task-1 accuracy at
 * least 10 points above none's; EWC's mean accuracy the highest; EWC's
 * last-task accuracy within 5 points of none's). Prints one line per run
 * and writes every number to the JSON file named by the first argument.
 *
 *   node tools/run-ts.mjs bench/ewc-sweep.ts results/ewc-sweep.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { DEFAULT_EWC_SETTINGS, runEwc, type EwcSettings, type Method } from '../src/demo/ewc.js';
import { GpuEngine } from '../src/engine/gpu.js';
import type { OptimizerSpec } from '../src/engine/optimizer.js';
import { openDevice } from '../src/gpu/device.js';

const out = process.argv[2] ?? 'results/ewc-sweep.json';
const gpu = await openDevice();
const engine = new GpuEngine(gpu);
const optimizers: OptimizerSpec[] = [
  { type: 'adam', learningRate: 1e-3 },
  { type: 'adam', learningRate: 3e-3 },
];
const epochsList = [5, 10];
const lambdasEwc = [100, 300, 1000, 3000];
const lambdasL2 = [1e-3, 1e-2, 1e-1];

const last = (rows: number[][] | undefined) => rows![rows!.length - 1]!;
const mean = (r: number[]) => r.reduce((a, b) => a + b, 0) / r.length;
const runs: unknown[] = [];

async function one(base: EwcSettings, method: Method, lambda?: number): Promise<number[]> {
  const s = { ...base, methods: [method], ...(method === 'ewc' ? { lambdaEwc: lambda! } : method === 'l2' ? { lambdaL2: lambda! } : {}) };
  const r = await runEwc(engine, s);
  runs.push({ settings: s, accuracy: r.accuracy, seconds: r.seconds });
  return last(r.accuracy[method]);
}

for (const optimizer of optimizers) {
  for (const epochs of epochsList) {
    const base = { ...DEFAULT_EWC_SETTINGS, optimizer, epochs };
    const none = await one(base, 'none');
    const l2 = new Map<number, number[]>();
    for (const lam of lambdasL2) l2.set(lam, await one(base, 'l2', lam));
    const bestL2 = Math.max(...[...l2.values()].map(mean));
    for (const lam of lambdasEwc) {
      let ewc: number[];
      try {
        ewc = await one(base, 'ewc', lam);
      } catch (e) {
        console.log(`${optimizer.type} lr ${optimizer.learningRate} epochs ${epochs} λ_ewc ${lam}: ${(e as Error).message}`);
        continue;
      }
      const ok = ewc[0]! - none[0]! >= 0.1 && mean(ewc) > Math.max(mean(none), bestL2) && none[none.length - 1]! - ewc[ewc.length - 1]! <= 0.05;
      console.log(
        `${optimizer.type} lr ${optimizer.learningRate} epochs ${epochs} λ_ewc ${lam}: ` +
          `none ${none.map((a) => (100 * a).toFixed(1)).join('/')} ewc ${ewc.map((a) => (100 * a).toFixed(1)).join('/')} ` +
          `means none ${(100 * mean(none)).toFixed(1)} l2 best ${(100 * bestL2).toFixed(1)} ewc ${(100 * mean(ewc)).toFixed(1)} ${ok ? 'MEETS' : 'fails'}`,
      );
    }
    console.log(`  l2: ${[...l2].map(([lam, r]) => `λ ${lam}: ${r.map((a) => (100 * a).toFixed(1)).join('/')}`).join('; ')}`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify({ device: gpu.describe(), runs }, null, 1));
  }
}
gpu.dispose();
