/**
 * Version-1 specs (linear layers and activations only) give the same results
 * as before layers became modules: test/fixtures/v1-results.json holds the
 * Fisher matrices that fisher-gpu computed at commit 71305e5 on four such
 * specs, for every kind, diag and full, on the CPU and the GPU.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import type { DenseFisher } from '../../src/fisher/structures/full.js';
import { Dataset } from '../../src/model/data.js';
import { Network } from '../../src/model/network.js';
import { expectRelativeError } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

interface Golden {
  cases: { spec: unknown; seed: number; data: { x: number[]; y: number[]; n: number; inputs: number; targetWidth: number }; results: Record<string, string> }[];
}

const golden = JSON.parse(readFileSync(new URL('../fixtures/v1-results.json', import.meta.url), 'utf8')) as Golden;
const gpu = useGpu();

function decode(b64: string): Float64Array {
  const bytes = Buffer.from(b64, 'base64');
  return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
}

describe.each(golden.cases.map((c, k) => ({ ...c, k })))('version-1 spec $k', (c) => {
  const model = Network.random(c.spec, c.seed);
  const d = c.data;
  const data = new Dataset(Float32Array.from(d.x), Float32Array.from(d.y), d.n, d.inputs, d.targetWidth);

  it.each(Object.keys(c.results))('%s as before the redesign', async (key) => {
    const [backend, kind, structure] = key.split('/') as ['cpu' | 'gpu', 'empirical' | 'mc' | 'exact', 'diag' | 'full'];
    const options = { kind, structure, batchSize: 10, ...(kind === 'mc' ? { samples: 2, seed: 3 } : {}) };
    const F = await fisher(backend === 'cpu' ? new CpuEngine() : gpu(), model, data, options);
    const got = structure === 'diag' ? F.diagonal() : (F as DenseFisher).values;
    const before = decode(c.results[key]!);
    // The CPU reference does the same float64 operations: bit for bit for one label per sample.
    // With several (mc, exact) it now sums a sample's labels together (one forward pass each), a
    // reordering of float64 sums.
    if (backend === 'cpu' && kind === 'empirical') expect(Array.from(got)).toEqual(Array.from(before));
    else if (backend === 'cpu') expectRelativeError(got, before, 1e-13, key);
    // The GPU runs the same products, planned by layer: float32 sums may be ordered otherwise.
    else expectRelativeError(got, before, 1e-6, key);
  });
});
