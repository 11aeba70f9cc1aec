/**
 * The activation functions: one table, from which the spec's accepted names,
 * the reference path's functions and the GPU kernels' activation codes (the
 * `ACT_<NAME>` constants of shaders/activation.wgsl) are all derived.
 *
 * `df` is the derivative with respect to the pre-activation z.
 */
import { normalCdf, normalPdf, sigmoid } from '../linalg/special.js';

export interface Activation {
  /** a = f(z), float64. */
  f(z: number): number;
  /** da/dz at z, float64. */
  df(z: number): number;
}

export const ACTIVATIONS = {
  identity: { f: (z) => z, df: () => 1 },
  relu: { f: (z) => (z > 0 ? z : 0), df: (z) => (z > 0 ? 1 : 0) },
  tanh: { f: (z) => Math.tanh(z), df: (z) => 1 - Math.tanh(z) ** 2 },
  sigmoid: {
    f: sigmoid,
    df: (z) => {
      const s = sigmoid(z);
      return s * (1 - s);
    },
  },
  // The exact form, z·Φ(z), as PyTorch's default nn.GELU().
  gelu: { f: (z) => z * normalCdf(z), df: (z) => normalCdf(z) + z * normalPdf(z) },
} as const satisfies Record<string, Activation>;

export type ActivationName = keyof typeof ACTIVATIONS;
export const ACTIVATION_NAMES = Object.keys(ACTIVATIONS) as ActivationName[];

export function isActivationName(s: string): s is ActivationName {
  return Object.prototype.hasOwnProperty.call(ACTIVATIONS, s);
}
