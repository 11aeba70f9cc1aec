/**
 * Choosing matmul shapes per adapter: defaults by the kind of adapter, the
 * short search run the first time fisher-gpu meets an adapter, and the
 * scoring both it and `fisher bench --tune` use.
 *
 * Kinds: a CPU-SIMD driver (lavapipe/llvmpipe, SwiftShader) runs a
 * workgroup's invocations on one core's vector lanes, where per-lane loads
 * bound a product and tall blocks that share rows across a subgroup win
 * (bench/RESULTS.md); a GPU (discrete or integrated) wants workgroup-shared
 * tiles, every operand read from memory once per tile.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { activationCode } from '../kernels/activation.js';
import { DEFAULT_MATMUL_CONFIG, Matmul, matmulConfigProblem, matmulDeviceProblem, sameMatmulConfig, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';
import { kernelWork } from '../kernels/work.js';
import { Rng } from '../model/random.js';

export type AdapterKind = 'cpu' | 'gpu';

/** Whether an adapter is a CPU-SIMD driver or a GPU, from what it says of itself. */
export function adapterKind(gpu: GpuDevice): AdapterKind {
  const a = gpu.adapter;
  const words = `${a.description} ${a.vendor} ${a.architecture} ${a.device}`.toLowerCase();
  return /llvmpipe|lavapipe|swiftshader|software|\bcpu\b/.test(words) ? 'cpu' : 'gpu';
}

/**
 * The shapes by kind, in order of preference, each with a nominal rate
 * (relative: what the choice between them weighs). CPU-SIMD: a 256 × 64
 * tile of 32 × 8 blocks sharing rows across a subgroup of 8 (30 GFLOP/s
 * tuned on lavapipe, against 14 for 8 × 8 plain), then the plain 8 × 8.
 * GPU: workgroup-shared tiles of 64 × 64 (16 × 16 invocations of 4 × 4)
 * and of 32 × 32 for small products, then the plain core.
 */
function kindShapes(kind: AdapterKind, lanes: number): MatmulShape[] {
  if (kind === 'cpu') {
    return [
      { config: { tm: 4 * lanes, tn: 8, wgM: 4, wgN: lanes, core: 'subgroup' }, gflops: 30 },
      { config: DEFAULT_MATMUL_CONFIG, gflops: 14 },
    ];
  }
  return [
    { config: { tm: 4, tn: 4, wgM: 16, wgN: 16, core: 'shared' }, gflops: 40 },
    { config: { tm: 4, tn: 4, wgM: 8, wgN: 8, core: 'shared' }, gflops: 30 },
    { config: DEFAULT_MATMUL_CONFIG, gflops: 10 },
  ];
}

/** The default shapes of an adapter never tuned: those of its kind that fit it, the plain default where none does. */
export function defaultShapesFor(gpu: GpuDevice): MatmulShape[] {
  const fit = kindShapes(adapterKind(gpu), gpu.adapter.subgroupMaxSize).filter((s) => !matmulConfigProblem(s.config, gpu));
  return fit.length > 0 ? fit : [{ config: DEFAULT_MATMUL_CONFIG, gflops: 1 }];
}

/**
 * The short search's candidates: a handful around each kind's known good
 * shapes, so that it fits about 20 s on lavapipe where every candidate's
 * pipelines take seconds to compile.
 */
export function quickCandidates(gpu: GpuDevice): MatmulConfig[] {
  const lanes = gpu.adapter.subgroupMaxSize;
  const list: MatmulConfig[] =
    adapterKind(gpu) === 'cpu'
      ? [
          { tm: 4 * lanes, tn: 8, wgM: 4, wgN: lanes, core: 'subgroup' },
          { tm: 4 * lanes, tn: 8, wgM: 2, wgN: lanes, core: 'subgroup' },
          { tm: 2 * lanes, tn: 8, wgM: 4, wgN: lanes, core: 'subgroup' },
          DEFAULT_MATMUL_CONFIG,
        ]
      : [
          { tm: 4, tn: 4, wgM: 16, wgN: 16, core: 'shared' },
          // 128 × 128 tiles of 8 × 8 blocks over 256 invocations: the classic SIMT SGEMM shape.
          { tm: 8, tn: 8, wgM: 16, wgN: 16, core: 'shared' },
          { tm: 8, tn: 8, wgM: 8, wgN: 8, core: 'shared' },
          { tm: 8, tn: 4, wgM: 8, wgN: 16, core: 'shared' },
          { tm: 4, tn: 4, wgM: 8, wgN: 8, core: 'shared' },
          DEFAULT_MATMUL_CONFIG,
        ];
  return list.filter((c) => !matmulConfigProblem(c, gpu));
}

/**
 * The problems a shape is scored on: a batch, a layer (inputs → outputs)
 * and a Gram of P columns. `probe` is small enough that compiling the
 * pipelines dominates on lavapipe (the first-use search); `quick` and
 * `full` are `fisher bench --tune`'s.
 */
export type ScoreSize = 'probe' | 'quick' | 'full';
const SIZES: Record<ScoreSize, [batch: number, inputs: number, outputs: number, p: number]> = {
  probe: [256, 784, 128, 512],
  quick: [512, 784, 128, 600],
  full: [4096, 784, 256, 2410],
};

/** The products a score is taken over. */
export type ScoredProduct = 'forward' | 'squared_gradient' | 'gram';
export const SCORED_PRODUCTS: readonly ScoredProduct[] = ['forward', 'squared_gradient', 'gram'];

/**
 * What the first use of an adapter scores its candidates on. On a CPU-SIMD
 * driver each candidate's pipelines compile for seconds, so one small
 * product (the diagonal's reduction) per candidate. On a GPU they compile
 * in milliseconds, and a small product there times the launch and a few
 * workgroups, not the kernel: the full problems, every scored product.
 */
export function firstUseProblems(gpu: GpuDevice): { size: ScoreSize; products: readonly ScoredProduct[] } {
  return adapterKind(gpu) === 'cpu' ? { size: 'probe', products: ['squared_gradient'] } : { size: 'full', products: SCORED_PRODUCTS };
}

/**
 * Scores one configuration: the geometric mean of the FLOP/s of the
 * products that dominate the Fisher (forward, squared-gradient reduction,
 * Gram; or those given), each the best of `repeats` timed runs after a
 * warm-up. The warm-up compiles: lavapipe compiles a pipeline at its first
 * dispatch, seconds for the tall subgroup blocks, so a search in a hurry
 * scores fewer products.
 */
export async function scoreShape(gpu: GpuDevice, config: MatmulConfig, size: ScoreSize, repeats = 3, products: readonly ScoredProduct[] = SCORED_PRODUCTS): Promise<number> {
  const mm = await Matmul.create(gpu, config);
  const rng = new Rng(5);
  const [batch, inputs, outputs, p] = SIZES[size];
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
    const all: Record<ScoredProduct, [number, (st: Step) => void]> = {
      forward: [kernelWork('forward', batch, inputs, outputs).flops, (st) => mm.forward(st, { x, theta, layer, z, y, batch, inputs, outputs, activation: activationCode('relu') })],
      squared_gradient: [kernelWork('squared_gradient', batch, inputs, outputs).flops, (st) => mm.squaredGradient(st, { delta: z, a: x, out: s, layer, batch, inputs, outputs })],
      gram: [kernelWork('gram', batch, p, 0).flops, (st) => mm.gram(st, { g, out: f, batch, ld: p, offset: 0, size: p, row0: 0, rows: p })],
    };
    const runs = products.map((name) => all[name]);
    let logSum = 0;
    for (const [flops, encode] of runs) {
      let best = Infinity;
      for (let r = 0; r <= repeats; r++) {
        const t0 = performance.now();
        const { gpuSeconds } = await gpu.timed(async () => {
          await gpu.step('tune', encode);
          await gpu.finish();
        });
        // The first run compiles and warms up; it does not count. A GPU time of 0 (below the
        // timestamps' resolution, as where a browser quantizes them) falls back to the wall time.
        if (r > 0) best = Math.min(best, gpuSeconds || (performance.now() - t0) / 1000);
      }
      logSum += Math.log(flops / best / 1e9);
    }
    return Math.exp(logSum / runs.length);
  } finally {
    for (const b of held) gpu.buffers.release(b);
  }
}

export interface SearchResult {
  /** Every candidate scored, best first. */
  ranked: MatmulShape[];
  /** The default's score (DEFAULT_MATMUL_CONFIG), scored here if it was not a candidate. */
  defaultGflops: number;
  seconds: number;
}

/**
 * Whether the search starts another candidate: at the pace of the last one
 * (on lavapipe, mostly its compile: seconds), it would end within the
 * budget. Started on the time elapsed alone, a candidate begun just before
 * the budget ran out doubled a fresh machine's search.
 */
export function startsAnother(elapsedSeconds: number, lastSeconds: number, budgetSeconds: number): boolean {
  return elapsedSeconds + lastSeconds <= budgetSeconds;
}

/**
 * Scores candidates in order while the next would end within
 * `budgetSeconds` (startsAnother; at least one is always scored), best
 * first; a candidate the device cannot run (matmulDeviceProblem) is
 * skipped. `log` hears each score and each skip.
 */
export async function searchShapes(
  gpu: GpuDevice,
  candidates: readonly MatmulConfig[],
  size: ScoreSize,
  options: { budgetSeconds?: number; repeats?: number; products?: readonly ScoredProduct[]; log?: (line: string) => void } = {},
): Promise<SearchResult> {
  const start = performance.now();
  const elapsed = () => (performance.now() - start) / 1000;
  const ranked: MatmulShape[] = [];
  let last = 0;
  for (const config of candidates) {
    if (ranked.length > 0 && !startsAnother(elapsed(), last, options.budgetSeconds ?? Infinity)) break;
    const problem = await matmulDeviceProblem(config, gpu);
    if (problem) {
      options.log?.(`${JSON.stringify(config)}: skipped, ${problem}`);
      continue;
    }
    const begun = elapsed();
    const gflops = await scoreShape(gpu, config, size, options.repeats, options.products);
    last = elapsed() - begun;
    options.log?.(`${JSON.stringify(config)}: ${gflops.toFixed(1)} GFLOP/s`);
    ranked.push({ config, gflops });
  }
  ranked.sort((a, b) => b.gflops - a.gflops);
  const d = ranked.find((r) => sameMatmulConfig(r.config, DEFAULT_MATMUL_CONFIG));
  return { ranked, defaultGflops: d?.gflops ?? 0, seconds: elapsed() };
}
