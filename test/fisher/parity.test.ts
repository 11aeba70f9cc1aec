/**
 * The GPU engine against the float64 CPU engine, one call on each, on random
 * models and data of awkward sizes, for every activation and likelihood; and
 * the estimators against each other.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import type { DenseFisher } from '../../src/fisher/structures/full.js';
import { ACTIVATION_NAMES, type ActivationName } from '../../src/layers/activations.js';
import type { LikelihoodSpec } from '../../src/model/likelihoods.js';
import { expectClose, expectPerTensor, expectRelativeError, perTensorError } from '../helpers/compare.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const cpu = new CpuEngine();

const LIKELIHOODS: LikelihoodSpec[] = [{ type: 'categorical' }, { type: 'gaussian', sigma: 0.7 }, { type: 'bernoulli' }];
// Widths: 1, primes, one above and below the 4×8 = 32 block of the default kernel.
const ARCHS: number[][] = [
  [1, 2],
  [13, 37, 5],
  [31, 33, 1, 3],
  [7, 65, 11],
];

/** Largest relative errors seen, printed at the end for the record. */
const worst = { diag: 0, full: 0 };

describe.each(ACTIVATION_NAMES)('activation %s', (activation: ActivationName) => {
  it.each(LIKELIHOODS)('$type: forward, per-sample gradients, diag and full', async (lik) => {
    for (const [a, widths] of ARCHS.entries()) {
      if (lik.type === 'categorical' && widths[widths.length - 1]! < 2) continue;
      const model = randomModel(widths, activation, lik, 100 + a);
      const n = [1, 29, 101, 250][a]!;
      const data = randomData(model, n, 200 + a);
      const what = `${activation} ${lik.type} ${widths.join('-')} N=${n}`;

      const [gm, cm] = [await new GpuEngine(gpu()).load(model), await cpu.load(model)];
      expectClose(await gm.forward(data.x, n), await cm.forward(data.x, n), { rtol: 1e-5, atol: 1e-5 }, `${what}: forward`);
      expectPerTensor(await gm.gradients(data), await cm.gradients(data), model.layout, 1e-5, `${what}: gradients`);
      gm.release();

      const [gd, cd] = [(await fisher(gpu(), model, data)).diagonal(), (await fisher(cpu, model, data)).diagonal()];
      const gf = ((await fisher(gpu(), model, data, { structure: 'full', batchSize: 64 })) as DenseFisher).values;
      const cf = ((await fisher(cpu, model, data, { structure: 'full' })) as DenseFisher).values;
      // Recorded before the assertions, so that the record's own check can fail.
      worst.diag = Math.max(worst.diag, perTensorError(gd, cd, model.layout));
      worst.full = Math.max(worst.full, perTensorError(gf, cf, model.layout));
      expectPerTensor(gd, cd, model.layout, 1e-5, `${what}: diag`);
      expectPerTensor(gf, cf, model.layout, 1e-4, `${what}: full`);
    }
  });
});

describe.each(LIKELIHOODS)('kinds mc and exact, $type', (lik) => {
  it.each(['mc', 'exact'] as const)('%s: per-sample gradients, diag and full equal the CPU path', async (kind) => {
    const model = randomModel([13, 9, 4], 'gelu', lik, 31);
    const data = randomData(model, 67, 32);
    const options = { kind, ...(kind === 'mc' ? { samples: 3, seed: 11 } : {}) };
    const labels = kind === 'mc' ? ({ kind: 'sampled', seed: 11, draw: 1, firstSample: 5 } as const) : ({ kind: 'factor', column: 2 } as const);
    const [gm, cm] = [await new GpuEngine(gpu()).load(model), await cpu.load(model)];
    // The same labels drawn on both engines: the per-sample gradients agree row by row.
    expectPerTensor(await gm.gradients(data, labels), await cm.gradients(data, labels), model.layout, 1e-5, `${kind} gradients`);
    gm.release();
    const [gd, cd] = [(await fisher(gpu(), model, data, { ...options, batchSize: 20 })).diagonal(), (await fisher(cpu, model, data, options)).diagonal()];
    const gf = ((await fisher(gpu(), model, data, { ...options, structure: 'full', batchSize: 30 })) as DenseFisher).values;
    const cf = ((await fisher(cpu, model, data, { ...options, structure: 'full' })) as DenseFisher).values;
    worst.diag = Math.max(worst.diag, perTensorError(gd, cd, model.layout));
    worst.full = Math.max(worst.full, perTensorError(gf, cf, model.layout));
    expectPerTensor(gd, cd, model.layout, 1e-5, `${kind} diag`);
    expectPerTensor(gf, cf, model.layout, 1e-4, `${kind} full`);
  });
});

describe('streaming and cross-checks', () => {
  const model = randomModel([23, 19, 7], 'tanh', { type: 'categorical' }, 9);
  const data = randomData(model, 97, 10);

  it('gives the same result whatever the batch size (1, 7, all)', async () => {
    const all = await fisher(gpu(), model, data, { structure: 'full' });
    for (const batchSize of [1, 7]) {
      const F = await fisher(gpu(), model, data, { structure: 'full', batchSize });
      expectRelativeError((F as DenseFisher).values, (all as DenseFisher).values, 1e-5, `full, batch ${batchSize}`);
      const d = await fisher(gpu(), model, data, { structure: 'diag', batchSize });
      expectRelativeError(d.diagonal(), all.diagonal(), 1e-5, `diag, batch ${batchSize}`);
    }
  });

  it('diag equals the diagonal of full; sum equals N times mean', async () => {
    const full = await fisher(gpu(), model, data, { structure: 'full' });
    const diag = await fisher(gpu(), model, data, { structure: 'diag' });
    expectRelativeError(diag.diagonal(), full.diagonal(), 1e-5, 'diag vs diagonal of full');
    const sum = await fisher(gpu(), model, data, { structure: 'diag', reduction: 'sum' });
    expectClose(sum.diagonal(), diag.diagonal().map((v) => v * data.n), { rtol: 1e-12 }, 'sum vs N·mean');
  });

  it('the GPU\'s running total of squared-gradient sums equals the batches\' sums added on the host, and gives its buffers back', async () => {
    const loaded = await new GpuEngine(gpu()).load(model);
    try {
      const batches = [data.slice(0, 40), data.slice(40, 41), data.slice(41, 97)];
      const host = new Float64Array(model.parameterCount);
      for (const b of batches) (await loaded.squaredGradientSum(b)).forEach((v, j) => (host[j]! += v));
      const total = loaded.squaredGradientTotal!();
      for (const b of batches) await total.add(b);
      const read = await total.read();
      expectRelativeError(read, host, 1e-6, 'device total against host sums');
      // Scaled as read (the diagonal's 1/N), each value the unscaled one times the scale.
      expectClose(await total.read(0.25), read.map((v) => v * 0.25), { rtol: 1e-15 }, 'the total read times 0.25');
      total.release();
      await expect(total.add(batches[0]!)).rejects.toThrow(/after release/);
      // A second total takes the first one's buffers from the pool.
      const created = gpu().buffers.stats().created;
      const again = loaded.squaredGradientTotal!();
      await again.add(batches[0]!);
      await again.read();
      again.release();
      expect(gpu().buffers.stats().created).toBe(created);
    } finally {
      loaded.release();
    }
  });

  it('stays within 1e-5 of float64 over 20,000 samples in many batches', async () => {
    const small = randomModel([5, 6, 3], 'sigmoid', { type: 'categorical' }, 4);
    const big = randomData(small, 20_000, 5);
    const [g, c] = [(await fisher(gpu(), small, big, { batchSize: 333 })).diagonal(), (await fisher(cpu, small, big)).diagonal()];
    worst.diag = Math.max(worst.diag, perTensorError(g, c, small.layout));
    expectPerTensor(g, c, small.layout, 1e-5, 'diag, N = 20000');
  });

  it('reports the largest errors seen', () => {
    console.log(`largest relative errors against float64: diag ${worst.diag.toExponential(2)}, full ${worst.full.toExponential(2)}`);
    expect(worst.diag).toBeLessThanOrEqual(1e-5);
    expect(worst.full).toBeLessThanOrEqual(1e-4);
  });
});
