import { describe, expect, it } from 'vitest';
import { u32Constant } from '../../src/gpu/reflect.js';
import { activationCode, ACTIVATION_WGSL, derivativeCode } from '../../src/kernels/activation.js';
import { Elementwise } from '../../src/kernels/elementwise.js';
import { ACTIVATION_NAMES } from '../../src/layers/activations.js';
import { Rng } from '../../src/model/random.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('activation codes', () => {
  it('every activation of the model table has its own ACT_* code in the WGSL', () => {
    const codes = ACTIVATION_NAMES.map(activationCode);
    expect(new Set(codes).size).toBe(ACTIVATION_NAMES.length);
    expect(() => activationCode('swish')).toThrow(/no u32 constant ACT_SWISH/);
    expect(ACTIVATION_WGSL).toContain('fn activate_derivative');
  });
});

describe('derivatives from the output (derivativeCode)', () => {
  it('are those of derivative_at_output in the WGSL: ReLU, tanh and sigmoid, not GELU', () => {
    const at = (name: string) => derivativeCode(activationCode(name));
    for (const name of ['relu', 'tanh', 'sigmoid']) expect(at(name), name).toEqual({ code: activationCode(name) + u32Constant(ACTIVATION_WGSL, 'ACT_AT_OUTPUT'), atOutput: true });
    for (const name of ['gelu', 'identity']) expect(at(name), name).toEqual({ code: activationCode(name), atOutput: false });
  });

  it('on the device, equal bit for bit the derivative at z, fed the forward\'s own a = act(z)', async () => {
    const ew = new Elementwise(gpu());
    const rng = new Rng(11);
    // Zeros, signed zeros, values near the kinks and far in the tails, and random ones.
    const z = Float32Array.from([0, -0, 1e-30, -1e-30, 1e-7, -1e-7, 14.9, -14.9, 15, 16, -16, 88, -88, 100, -100, ...Array.from({ length: 1009 }, () => 6 * rng.normal())]);
    const count = z.length;
    const dy = Float32Array.from({ length: count }, () => rng.normal());
    const buffer = (data: Float32Array, label: string) => gpu().storage(count * 4, label, data);
    const [zb, dyb, ab, fromZ, fromA] = await Promise.all([buffer(z, 'z'), buffer(dy, 'dy'), buffer(new Float32Array(count), 'a'), buffer(new Float32Array(count), 'from z'), buffer(new Float32Array(count), 'from a')]);
    try {
      for (const name of ['relu', 'tanh', 'sigmoid']) {
        const code = activationCode(name);
        await gpu().step(name, (s) => {
          ew.activationForward(s, { x: zb, y: ab, count, activation: code });
          ew.activationBackward(s, { dy: dyb, z: zb, dx: fromZ, count, activation: code });
          ew.activationBackward(s, { dy: dyb, z: ab, dx: fromA, count, activation: derivativeCode(code).code });
        });
        const [expected, got] = [await gpu().readF32(fromZ, count * 4), await gpu().readF32(fromA, count * 4)];
        expect(Array.from(got), name).toEqual(Array.from(expected));
      }
    } finally {
      for (const b of [zb, dyb, ab, fromZ, fromA]) gpu().buffers.release(b);
    }
  });
});
