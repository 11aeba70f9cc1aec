/**
 * `fisher bench --tune`: searches the matmul kernel's shapes (block per
 * invocation, workgroup, plain or subgroup-shared core) on the present
 * adapter, scoring each by the geometric mean of its FLOP/s on the three
 * products that dominate the Fisher (forward, squared-gradient reduction,
 * Gram), and stores the winner in the tuning cache.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { activationCode } from '../kernels/activation.js';
import { DEFAULT_MATMUL_CONFIG, Matmul, matmulConfigProblem, type MatmulConfig } from '../kernels/matmul.js';
import { Rng } from '../model/random.js';
import { kernelWork } from './workloads.js';

export interface TuneResult {
  config: MatmulConfig;
  gflops: number;
}

/** The candidates that fit this device. */
export function candidates(gpu: GpuDevice): MatmulConfig[] {
  const out: MatmulConfig[] = [];
  for (const [tm, tn] of [[4, 4], [8, 4], [4, 8], [8, 8]]) {
    for (const [wgM, wgN] of [[8, 8], [4, 8], [8, 4], [4, 16], [16, 16]]) out.push({ tm: tm!, tn: tn!, wgM: wgM!, wgN: wgN!, subgroups: false });
  }
  const lanes = gpu.adapter.subgroupMaxSize;
  if (lanes > 0) {
    for (const tm of [lanes, 2 * lanes, 3 * lanes, 4 * lanes]) {
      for (const wgM of [1, 2, 4, 8]) out.push({ tm, tn: 8, wgM, wgN: lanes, subgroups: true });
    }
  }
  return out.filter((c) => !matmulConfigProblem(c, gpu));
}

/** Scores one configuration: the geometric mean of three products' GFLOP/s (best of 3 runs each). */
export async function score(gpu: GpuDevice, config: MatmulConfig, size: 'quick' | 'full'): Promise<number> {
  const mm = await Matmul.create(gpu, config);
  const rng = new Rng(5);
  const [batch, inputs, outputs, p] = size === 'quick' ? [512, 784, 128, 600] : [4096, 784, 256, 2410];
  const held: GPUBuffer[] = [];
  const buf = async (floats: number) => {
    const b = await gpu.storage(floats * 4, 'tune', rng.normals(floats));
    held.push(b);
    return b;
  };
  try {
    const [x, theta, z, y, s, g, f] = [
      await buf(batch * inputs),
      await buf(outputs * (inputs + 1)),
      await buf(batch * outputs),
      await buf(batch * outputs),
      await buf(outputs * (inputs + 1)),
      await buf(batch * p),
      await buf(p * p),
    ];
    const layer = { weightOffset: 0, biasOffset: outputs * inputs };
    const runs: [number, (st: Step) => void][] = [
      [kernelWork('forward', batch, inputs, outputs).flops, (st) => mm.forward(st, { x, theta, layer, z, y, batch, inputs, outputs, activation: activationCode('relu') })],
      [kernelWork('squared_gradient', batch, inputs, outputs).flops, (st) => mm.squaredGradient(st, { delta: z, a: x, out: s, layer, batch, inputs, outputs })],
      [kernelWork('gram', batch, p, 0).flops, (st) => mm.gram(st, { g, out: f, batch, ld: p, offset: 0, size: p, row0: 0, rows: p })],
    ];
    let logSum = 0;
    for (const [flops, encode] of runs) {
      let best = Infinity;
      for (let r = 0; r < 4; r++) {
        const t0 = performance.now();
        const { gpuSeconds } = await gpu.timed(async () => {
          await gpu.step('tune', encode);
          await gpu.finish();
        });
        // The first run compiles and warms up; it does not count.
        if (r > 0) best = Math.min(best, gpuSeconds ?? (performance.now() - t0) / 1000);
      }
      logSum += Math.log(flops / best / 1e9);
    }
    return Math.exp(logSum / runs.length);
  } finally {
    for (const b of held) gpu.buffers.release(b);
  }
}

/** Scores every candidate; returns them best first, with the default's score. */
export async function tune(gpu: GpuDevice, size: 'quick' | 'full', log: (line: string) => void): Promise<{ ranked: TuneResult[]; defaultGflops: number }> {
  const ranked: TuneResult[] = [];
  for (const config of candidates(gpu)) {
    const gflops = await score(gpu, config, size);
    log(`${JSON.stringify(config)}: ${gflops.toFixed(1)} GFLOP/s`);
    ranked.push({ config, gflops });
  }
  ranked.sort((a, b) => b.gflops - a.gflops);
  const d = ranked.find((r) => JSON.stringify(r.config) === JSON.stringify(DEFAULT_MATMUL_CONFIG));
  return { ranked, defaultGflops: d?.gflops ?? (await score(gpu, DEFAULT_MATMUL_CONFIG, size)) };
}
