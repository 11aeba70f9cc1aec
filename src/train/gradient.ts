/**
 * The gradient of the mean loss, ∇θ (1/N) Σ_n ℓ_n = (1/N) Σ_n g_n, on an
 * engine: what a natural-gradient step multiplies by F⁻¹. Summed in float64
 * over batches of per-sample gradients (at most `batchSize` rows of P on the
 * device at once).
 */
import type { Engine } from '../engine/engine.js';
import { engineFor } from '../engine/select.js';
import type { GpuDevice } from '../gpu/device.js';
import type { Dataset } from '../model/data.js';
import type { Network } from '../model/network.js';

export async function lossGradient(target: Engine | GpuDevice, model: Network, data: Dataset, options: { batchSize?: number } = {}): Promise<Float64Array> {
  data.check(model);
  const p = model.parameterCount;
  const loaded = await engineFor(target).load(model);
  try {
    const batch = Math.max(1, Math.min(options.batchSize ?? 256, loaded.maxBatch('full'), Math.floor(2 ** 26 / p)));
    const sum = new Float64Array(p);
    for (let start = 0; start < data.n; start += batch) {
      const end = Math.min(data.n, start + batch);
      const g = await loaded.gradients(data.slice(start, end));
      for (let s = 0; s < end - start; s++) for (let i = 0; i < p; i++) sum[i]! += g[s * p + i]!;
    }
    return sum.map((x) => x / data.n);
  } finally {
    loaded.release();
  }
}
