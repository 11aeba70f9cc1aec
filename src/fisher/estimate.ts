/**
 * The estimator: streams the data through an engine in batches and sums the
 * batch partials with compensation (DESIGN.md §1–3).
 *
 *   diag   F_ii = c · Σ_n Σ_v g_{n,v,i}²
 *   full   F    = c · Σ_n Σ_v g_{n,v} g_{n,v}ᵀ
 *
 * over "virtual samples" v per input, by kind:
 *   empirical  one, the data's label                        c = 1/N
 *   mc         M labels ŷ ~ p(· | x_n, θ)                   c = 1/(N·M)
 *   exact      the columns of S, S Sᵀ = H (so Σ_v = J ᵀH J)  c = 1/N
 * and c without its 1/N for reduction 'sum'. Batches are as large as the
 * engine allows (or as asked), so N is bounded by nothing but time.
 */
import type { GpuDevice } from '../gpu/device.js';
import { DATA_LABELS, type Engine, type LabelSource } from '../engine/engine.js';
import { engineFor } from '../engine/select.js';
import type { Dataset } from '../model/data.js';
import { InputError } from '../layers/errors.js';
import type { Network } from '../model/network.js';
import { CompensatedSum } from './accumulator.js';
import { resolveOptions, type FisherOptions, type ResolvedOptions } from './options.js';
import { DenseFisher, DiagonalFisher, type FisherInfo, type FisherMatrix } from './result.js';

/** The largest dense Fisher accumulated on the host: 2^28 entries (4 GiB as two float64 arrays, P ≈ 16,000). */
export const MAX_DENSE_ENTRIES = 2 ** 28;

/**
 * The Fisher information of `model` on `data`.
 *
 * @param target a GPU device from `openDevice()`, or an engine (e.g. `new CpuEngine()`).
 */
export async function fisher(target: Engine | GpuDevice, model: Network, data: Dataset, options: FisherOptions = {}): Promise<FisherMatrix> {
  const o = resolveOptions(options);
  data.check(model);
  const p = model.parameterCount;
  if (o.structure === 'full' && p * p > MAX_DENSE_ENTRIES) {
    throw new InputError(
      `the full Fisher of P = ${p} parameters has ${(p * p).toExponential(2)} entries (${((16 * p * p) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} supported; use structure "diag"`,
    );
  }
  const engine = engineFor(target);
  const loaded = await engine.load(model);
  try {
    const structure = o.structure === 'full' ? 'full' : 'diag';
    const virtualSamples = labelSources(o, model, 0).length;
    const max = loaded.maxBatch(structure, virtualSamples);
    const batch = Math.min(o.batchSize ?? max, max);
    const acc = new CompensatedSum(structure === 'full' ? p * p : p);
    for (let start = 0; start < data.n; start += batch) {
      const end = Math.min(data.n, start + batch);
      const chunk = data.slice(start, end);
      // One forward pass per batch; the engine runs one backward pass per virtual sample.
      const labels = labelSources(o, model, start);
      if (structure === 'full') await loaded.gramSum(chunk, (t) => acc.add(t.values, t.row0 * p), labels);
      else acc.add(await loaded.squaredGradientSum(chunk, labels));
      o.onProgress?.(end, data.n);
    }
    const info: FisherInfo = {
      kind: o.kind,
      structure: o.structure,
      reduction: o.reduction,
      n: data.n,
      samples: o.samples,
      seed: o.seed,
      backend: engine.backend,
    };
    const values = acc.result((o.reduction === 'mean' ? 1 / data.n : 1) / o.samples);
    if (structure === 'full') mirrorUpper(values, p);
    return structure === 'full' ? new DenseFisher(info, model.layout, values) : new DiagonalFisher(info, model.layout, values);
  } finally {
    loaded.release();
  }
}

/** The virtual samples of each input, for a batch starting at dataset index `start`. */
function labelSources(o: ResolvedOptions, model: Network, start: number): LabelSource[] {
  switch (o.kind) {
    case 'empirical':
      return [DATA_LABELS];
    case 'mc':
      return Array.from({ length: o.samples }, (_, draw) => ({ kind: 'sampled', seed: o.seed ?? 0, draw, firstSample: start }));
    case 'exact':
      return Array.from({ length: model.likelihood.factorColumns(model.outputs) }, (_, column) => ({ kind: 'factor', column }));
  }
}

/** Copies the upper triangle of a P × P row-major matrix onto the lower. */
function mirrorUpper(m: Float64Array, p: number): void {
  for (let r = 1; r < p; r++) for (let c = 0; c < r; c++) m[r * p + c] = m[c * p + r]!;
}
