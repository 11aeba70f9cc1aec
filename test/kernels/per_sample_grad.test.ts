/** per_sample_grad.wgsl against δ ⊗ [a, 1] written at the layer's offset, rows of stride P. */
import { describe, it } from 'vitest';
import { PerSampleGrad } from '../../src/kernels/per_sample_grad.js';
import { Rng } from '../../src/model/random.js';
import { expectClose } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('per-sample gradient rows', () => {
  it.each([
    [1, 1, 1],
    [3, 7, 2],
    [17, 5, 13],
    [65, 63, 1],
  ])('batch %i, in %i, out %i, at an offset inside wider rows', async (n, inputs, outputs) => {
    const kernel = await PerSampleGrad.create(gpu());
    const rng = new Rng(n + inputs + outputs);
    const delta = rng.normals(n * outputs);
    const a = rng.normals(n * inputs);
    const offset = 3;
    const block = outputs * (inputs + 1);
    const p = offset + block + 2;
    const [bd, ba, bg] = [await gpu().storage(delta.byteLength, 'd', delta), await gpu().storage(a.byteLength, 'a', a), await gpu().storage(n * p * 4, 'g', new Float32Array(n * p).fill(NaN))];
    await gpu().step('rows', (s) => kernel.encode(s, { delta: bd, a: ba, g: bg, batch: n, inputs, outputs, parameters: p, offset }));
    const got = await gpu().readF32(bg, n * p * 4);
    const ref = new Float64Array(n * p).fill(NaN);
    for (let s = 0; s < n; s++) {
      for (let o = 0; o < outputs; o++) {
        for (let i = 0; i < inputs; i++) ref[s * p + offset + o * inputs + i] = delta[s * outputs + o]! * a[s * inputs + i]!;
        ref[s * p + offset + outputs * inputs + o] = delta[s * outputs + o]!;
      }
    }
    // Elements outside the layer's block stay untouched (NaN in both).
    const inside = (k: number) => k % p >= offset && k % p < offset + block;
    expectClose(Array.from(got).filter((_, k) => inside(k)), Array.from(ref).filter((_, k) => inside(k)), { rtol: 1e-7 }, 'g');
    expectClose(Array.from(got).filter((_, k) => !inside(k)).map(Number.isNaN).map(Number), Array.from(ref).filter((_, k) => !inside(k)).map(() => 1), { rtol: 0 }, 'untouched');
    for (const b of [bd, ba, bg]) gpu().buffers.release(b);
  });
});
