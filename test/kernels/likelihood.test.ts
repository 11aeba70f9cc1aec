/** likelihood.wgsl against the likelihood table's float64 output gradients. */
import { describe, expect, it } from 'vitest';
import { LIKELIHOOD_WGSL, LikelihoodHead, likelihoodCode } from '../../src/kernels/likelihood.js';
import { LIKELIHOOD_TYPES, likelihoodOf, type LikelihoodSpec } from '../../src/model/likelihoods.js';
import { Rng } from '../../src/model/random.js';
import { expectClose } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('likelihood head', () => {
  it('has one WGSL code per likelihood type, all distinct', () => {
    const codes = LIKELIHOOD_TYPES.map(likelihoodCode);
    expect(new Set(codes).size).toBe(LIKELIHOOD_TYPES.length);
    expect(LIKELIHOOD_WGSL).toContain('fn output_gradient');
  });

  const specs: LikelihoodSpec[] = [{ type: 'categorical' }, { type: 'gaussian', sigma: 0.3 }, { type: 'bernoulli' }];
  for (const spec of specs) {
    it.each([1, 2, 7, 65, 130])(`${spec.type}: δ = ∂ℓ/∂f for %i samples of awkward widths`, async (n) => {
      const lik = likelihoodOf(spec);
      const head = await LikelihoodHead.create(gpu(), spec.type);
      const rng = new Rng(n);
      for (const outputs of spec.type === 'categorical' ? [2, 3, 11] : [1, 3, 11]) {
        const width = lik.targets === 'labels' ? 1 : outputs;
        // Large logits too: the softmax must not overflow.
        const f = rng.normals(n * outputs, 8);
        const y = Float32Array.from({ length: n * width }, () => (spec.type === 'categorical' ? rng.int(outputs) : spec.type === 'bernoulli' ? rng.uniform() : rng.normal()));
        const [bf, by, bd] = [await gpu().storage(f.byteLength, 'f', f), await gpu().storage(y.byteLength, 'y', y), await gpu().storage(f.byteLength, 'delta', new Float32Array(n * outputs).fill(NaN))];
        await gpu().step('head', (s) => head.outputGradient(s, { f: bf, targets: by, delta: bd, batch: n, outputs, targetWidth: width, precision: lik.precision }));
        const ref = new Float64Array(n * outputs);
        for (let s = 0; s < n; s++) lik.outputGradient(f.subarray(s * outputs, (s + 1) * outputs), y.subarray(s * width, (s + 1) * width), ref.subarray(s * outputs, (s + 1) * outputs));
        expectClose(await gpu().readF32(bd, f.byteLength), ref, { rtol: 1e-5, atol: 1e-6 * lik.precision }, `${spec.type} δ (${outputs} outputs)`);
        for (const b of [bf, by, bd]) gpu().buffers.release(b);
      }
    });
  }
});
