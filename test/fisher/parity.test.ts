import { describe, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import { expectRelativeError } from '../helpers/compare.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('GPU against the float64 CPU path', () => {
  it('diag, relu, categorical', async () => {
    const model = randomModel([13, 37, 5], 'relu', { type: 'categorical' }, 1);
    const data = randomData(model, 101, 2);
    const ref = await fisher(new CpuEngine(), model, data, { structure: 'diag' });
    const got = await fisher(gpu(), model, data, { structure: 'diag' });
    expectRelativeError(got.diagonal(), ref.diagonal(), 1e-5, 'diag');
  });
  it('full, tanh, gaussian', async () => {
    const model = randomModel([7, 11, 3], 'tanh', { type: 'gaussian', sigma: 0.5 }, 3);
    const data = randomData(model, 53, 4);
    const ref = await fisher(new CpuEngine(), model, data, { structure: 'full' });
    const got = await fisher(gpu(), model, data, { structure: 'full', batchSize: 17 });
    expectRelativeError((got as never as { values: Float64Array }).values, (ref as never as { values: Float64Array }).values, 1e-4, 'full');
  });
});
