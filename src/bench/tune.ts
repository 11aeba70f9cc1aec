/**
 * `fisher bench --tune`: the thorough search of the matmul kernel's shapes
 * (block per invocation, workgroup, core) on the present adapter. The grid
 * is pruned by a cost model before anything compiles (on lavapipe every
 * candidate's pipelines take seconds), the survivors are scored on small
 * problems, and only the best few on the full ones: about 20 candidates'
 * compilation at most, not the grid's. Scores are the geometric mean of the
 * FLOP/s of the three products that dominate the Fisher (autotune.ts).
 */
import { adapterKind, scoreShape, searchShapes, type ScoreSize } from '../engine/autotune.js';
import type { GpuDevice } from '../gpu/device.js';
import { DEFAULT_MATMUL_CONFIG, matmulConfigProblem, sameMatmulConfig, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';

export interface TuneResult {
  config: MatmulConfig;
  gflops: number;
}

/** Every shape of the grid that fits this device: plain, subgroup-shared and workgroup-shared cores. */
export function gridCandidates(gpu: GpuDevice): MatmulConfig[] {
  const out: MatmulConfig[] = [];
  for (const [tm, tn] of [[4, 4], [8, 4], [4, 8], [8, 8]] as const) {
    for (const [wgM, wgN] of [[8, 8], [4, 8], [8, 4], [4, 16], [16, 16]] as const) {
      out.push({ tm, tn, wgM, wgN, core: 'plain' });
      out.push({ tm, tn, wgM, wgN, core: 'shared' });
    }
  }
  const lanes = gpu.adapter.subgroupMaxSize;
  if (lanes > 0) {
    for (const tm of [lanes, 2 * lanes, 3 * lanes, 4 * lanes]) {
      for (const wgM of [1, 2, 4, 8]) out.push({ tm, tn: 8, wgM, wgN: lanes, core: 'subgroup' });
    }
  }
  return out.filter((c) => !matmulConfigProblem(c, gpu));
}

/**
 * The cost model: operand loads per FMA of an invocation, from the memory
 * the adapter's kind pays for. A CPU-SIMD driver pays for every load a lane
 * makes (workgroup memory is ordinary memory there): TM + TN per TM·TN
 * FMAs, a subgroup-shared core TM/WG_N + TN. A GPU pays for device-memory
 * loads, which a workgroup-shared tile cuts to 1/(WG_N·TN) + 1/(WG_M·TM)
 * per FMA (its workgroup-memory reads cost far less); the plain core makes
 * TM + TN.
 */
export function loadsPerFma(c: MatmulConfig, kind: 'cpu' | 'gpu'): number {
  const fmas = c.tm * c.tn;
  if (c.core === 'subgroup') return (c.tm / c.wgN + c.tn) / fmas;
  if (c.core === 'shared' && kind === 'gpu') return 1 / (c.wgN * c.tn) + 1 / (c.wgM * c.tm) + 0.1 * ((c.tm + c.tn) / fmas);
  return (c.tm + c.tn) / fmas;
}

/** How many candidates survive the cost model, and how many of those go on to the full problems. */
export const SCORED = 8;
export const FINALISTS = 3;

/** The candidates `tune` scores: the SCORED cheapest by the cost model (larger tiles first among equals), and the default. */
export function candidates(gpu: GpuDevice): MatmulConfig[] {
  const kind = adapterKind(gpu);
  const tile = (c: MatmulConfig) => c.tm * c.wgM * c.tn * c.wgN;
  const ranked = gridCandidates(gpu).sort((a, b) => loadsPerFma(a, kind) - loadsPerFma(b, kind) || tile(b) - tile(a));
  const chosen = ranked.slice(0, SCORED);
  if (!chosen.some((c) => sameMatmulConfig(c, DEFAULT_MATMUL_CONFIG))) chosen.push(DEFAULT_MATMUL_CONFIG);
  return chosen;
}

/**
 * Scores the candidates on the quick problems, then the FINALISTS best on
 * `size` (for 'quick', the first round is the answer). Returns every shape
 * scored, best first, each at its score on the largest problems it ran;
 * the default's score.
 */
export async function tune(gpu: GpuDevice, size: 'quick' | 'full', log: (line: string) => void): Promise<{ ranked: TuneResult[]; defaultGflops: number }> {
  const first = await searchShapes(gpu, candidates(gpu), 'quick', { repeats: 2, log: (line) => log(`quick: ${line}`) });
  if (size === 'quick') return { ranked: first.ranked, defaultGflops: first.defaultGflops };
  const finalists = first.ranked.slice(0, FINALISTS);
  const rescored: MatmulShape[] = [];
  for (const { config } of finalists) {
    const gflops = await scoreShape(gpu, config, size satisfies ScoreSize);
    log(`full: ${JSON.stringify(config)}: ${gflops.toFixed(1)} GFLOP/s`);
    rescored.push({ config, gflops });
  }
  rescored.sort((a, b) => b.gflops - a.gflops);
  // The others keep their quick scores, scaled by how the finalists' scores moved (the full problems run at other rates).
  const ratio = rescored.reduce((s, r) => s + r.gflops, 0) / finalists.reduce((s, r) => s + r.gflops, 0);
  const rest = first.ranked.slice(FINALISTS).map((r) => ({ config: r.config, gflops: r.gflops * ratio }));
  const ranked = [...rescored, ...rest];
  return { ranked, defaultGflops: ranked.find((r) => sameMatmulConfig(r.config, DEFAULT_MATMUL_CONFIG))?.gflops ?? first.defaultGflops * ratio };
}
