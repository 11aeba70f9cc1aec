/**
 * The dispatch arithmetic: a 1-D range beyond one dimension's workgroup
 * limit becomes a 2-D grid that covers it with the least padding, and the
 * kernels that use it reach every element (the optimiser at P > 65,535 × 64).
 */
import { describe, expect, it } from 'vitest';
import { grid, groups } from '../../src/kernels/dispatch.js';
import { WG } from '../../src/kernels/family.js';
import { Optimizer } from '../../src/kernels/optimizer.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('dispatch', () => {
  it.each([1, 63, 64, 65, 65535 * 64, 65535 * 64 + 1, 10 ** 9])('grid covers %i invocations within the limit', (count) => {
    const [x, y] = grid(count, WG, 65535);
    expect(x).toBeLessThanOrEqual(65535);
    expect(y).toBeLessThanOrEqual(65535);
    expect(x * y * WG).toBeGreaterThanOrEqual(count);
    // No more than one row's worth of padding.
    expect((x * y - groups(count, WG)) / x).toBeLessThan(1);
  });

  it('refuses a range no grid holds', () => expect(() => grid(65535 * 65535 * WG + 1, WG, 65535)).toThrow(RangeError));

  it('an SGD step updates every one of P = 65,535 × 64 + 37 parameters', async () => {
    const p = 65535 * WG + 37;
    const optimizer = await Optimizer.create(gpu());
    const f = (v: number) => new Float32Array(p).fill(v);
    const [theta, grad, scale, center, m1, m2] = await Promise.all(
      [f(0), f(1), f(0), f(0), f(0), f(0)].map((d, i) => gpu().storage(p * 4, `buffer ${i}`, d)),
    );
    await gpu().step('sgd', (step) =>
      optimizer.encode(step, 'sgd', { theta: theta!, grad: grad!, penaltyScale: scale!, penaltyCenter: center!, moment1: m1!, moment2: m2! }, p, {
        learningRate: 0.5,
        momentum: 0,
        beta1: 0,
        beta2: 0,
        epsilon: 0,
        correction1: 1,
        correction2: 1,
      }),
    );
    const out = await gpu().readF32(theta!, p * 4);
    expect(out.every((v) => v === -0.5)).toBe(true);
    for (const b of [theta, grad, scale, center, m1, m2]) gpu().buffers.release(b!);
  });
});
