import { describe, expect, it } from 'vitest';
import { activationCode, ACTIVATION_WGSL } from '../../src/kernels/activation.js';
import { ACTIVATION_NAMES } from '../../src/layers/activations.js';

describe('activation codes', () => {
  it('every activation of the model table has its own ACT_* code in the WGSL', () => {
    const codes = ACTIVATION_NAMES.map(activationCode);
    expect(new Set(codes).size).toBe(ACTIVATION_NAMES.length);
    expect(() => activationCode('swish')).toThrow(/no u32 constant ACT_SWISH/);
    expect(ACTIVATION_WGSL).toContain('fn activate_derivative');
  });
});
