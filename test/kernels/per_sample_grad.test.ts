/** per_sample_grad.wgsl against Σ_t δ_t ⊗ [a_t, 1] written at the layer's offset, rows of stride P. */
import { describe, it } from 'vitest';
import { PerSampleGrad } from '../../src/kernels/per_sample_grad.js';
import { Rng } from '../../src/model/random.js';
import { expectClose } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('per-sample gradient rows', () => {
  // Blocks of at most 8 outputs by 8 input columns (the bias one more column): partial blocks of
  // both, several of each, with and without a bias.
  it.each([
    [1, 1, 1, 1, true],
    [3, 7, 2, 1, true],
    [17, 5, 13, 1, true],
    [65, 63, 1, 1, true],
    [2, 5, 3, 7, true],
    [9, 1, 4, 2, true],
    [4, 16, 20, 3, false],
    [3, 8, 8, 5, false],
    [5, 23, 17, 9, true],
  ] as const)('batch %i, in %i, out %i, %i positions, bias %s, at an offset inside wider rows', async (n, inputs, outputs, positions, bias) => {
    const kernel = new PerSampleGrad(gpu());
    const rng = new Rng(n + inputs + outputs + positions);
    const delta = rng.normals(n * positions * outputs);
    const a = rng.normals(n * positions * inputs);
    const offset = 3;
    const block = outputs * (inputs + (bias ? 1 : 0));
    const p = offset + block + 2;
    const [bd, ba, bg] = [await gpu().storage(delta.byteLength, 'd', delta), await gpu().storage(a.byteLength, 'a', a), await gpu().storage(n * p * 4, 'g', new Float32Array(n * p).fill(NaN))];
    await gpu().step('rows', (s) => kernel.encode(s, { delta: bd, a: ba, g: bg, batch: n, positions, inputs, outputs, bias, ldg: p, offset }));
    const got = await gpu().readF32(bg, n * p * 4);
    const ref = new Float64Array(n * p).fill(NaN);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outputs; o++) {
        for (let i = 0; i < inputs; i++) ref[s * p + offset + o * inputs + i] = 0;
        if (bias) ref[s * p + offset + outputs * inputs + o] = 0;
        for (let t = 0; t < positions; t++) {
          const r = s * positions + t;
          for (let i = 0; i < inputs; i++) ref[s * p + offset + o * inputs + i]! += delta[r * outputs + o]! * a[r * inputs + i]!;
          if (bias) ref[s * p + offset + outputs * inputs + o]! += delta[r * outputs + o]!;
        }
      }
    }
    // Elements outside the layer's block stay untouched (NaN in both).
    const inside = (k: number) => k % p >= offset && k % p < offset + block;
    expectClose(Array.from(got).filter((_, k) => inside(k)), Array.from(ref).filter((_, k) => inside(k)), { rtol: 1e-6, atol: 1e-6 }, 'g');
    expectClose(Array.from(got).filter((_, k) => !inside(k)).map(Number.isNaN).map(Number), Array.from(ref).filter((_, k) => !inside(k)).map(() => 1), { rtol: 0 }, 'untouched');
    for (const b of [bd, ba, bg]) gpu().buffers.release(b);
  });
});
