/**
 * prepareFisher: the pipelines of a run built before its data is there (the
 * command line calls it while the data file loads). A run after it builds no
 * pipeline of its own.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher, prepareFisher } from '../../src/fisher/estimate.js';
import type { FisherOptions } from '../../src/fisher/options.js';
import { expectRelativeError } from '../helpers/compare.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('prepareFisher', () => {
  // Each case on models no other case of this file uses: its pipelines are new to the device.
  it.for<[string, FisherOptions, () => ReturnType<typeof randomModel>]>([
    ['an MLP, empirical diag', { kind: 'empirical', structure: 'diag' }, () => randomModel([7, 5, 3], 'tanh', { type: 'categorical' }, 1)],
    ['convolutions, mc kfac', { kind: 'mc', structure: 'kfac', samples: 2, seed: 3 }, () => caseModel(NETWORK_CASES[1]!, 2)],
    ['layer norm and residual blocks, exact lowrank', { kind: 'exact', structure: 'lowrank', rank: 3 }, () => caseModel(NETWORK_CASES[4]!, 4)],
  ])('%s: builds the pipelines the run uses, and the run none more', async ([, options, make]) => {
    const model = make();
    const data = randomData(model, 37, 5);
    const before = gpu().pipelineCount;
    await prepareFisher(gpu(), model, options);
    const prepared = gpu().pipelineCount;
    expect(prepared).toBeGreaterThan(before);
    const F = await fisher(gpu(), model, data, options);
    expect(gpu().pipelineCount).toBe(prepared);
    // The warm-up leaves nothing behind in the result: it is the CPU reference's.
    const ref = await fisher(new CpuEngine(), model, data, options);
    if (options.structure !== 'lowrank') expectRelativeError(F.diagonal(), ref.diagonal(), 1e-4, 'diagonal');
  });

  it('does nothing on the CPU reference, nor for a structure whose sums are large', async () => {
    const model = randomModel([64, 48, 3], 'relu', { type: 'categorical' }, 6);
    await expect(prepareFisher(new CpuEngine(), model, { structure: 'diag' })).resolves.toBeUndefined();
    // full: (P = 3,267)² float64 sums, more than the warm-up may hold beside the run's.
    const before = gpu().pipelineCount;
    await prepareFisher(gpu(), model, { structure: 'full' });
    expect(gpu().pipelineCount).toBe(before);
  });
});
