/**
 * The likelihood heads p(y | f), f = the last linear layer's output (logits
 * or mean): one table, from which the spec's accepted types, the reference
 * path's loss and output gradient, the output Fisher and the GPU kernel's
 * likelihood codes (`LIK_<TYPE>` in shaders/likelihood.wgsl) are derived.
 *
 * Conventions: ℓ = −log p(y | f) per sample; `outputGradient` is ∂ℓ/∂f;
 * `outputFisher` is H = E_{y~p}[∂ℓ/∂f ∂ℓ/∂fᵀ], row-major [o, o'].
 * Targets: class labels (one per sample) or values (one per output).
 */
import { sigmoid, softplus } from '../linalg/special.js';

export type LikelihoodSpec =
  | { type: 'categorical' }
  | { type: 'gaussian'; sigma: number }
  | { type: 'bernoulli' };

export type LikelihoodType = LikelihoodSpec['type'];

export interface Likelihood {
  readonly spec: LikelihoodSpec;
  /** 'labels': one integer class per sample; 'values': one number per output. */
  readonly targets: 'labels' | 'values';
  /** Multiplier of the output gradient the GPU head applies (1/σ² for gaussian). */
  readonly precision: number;
  /** Checks a target row for this likelihood; returns a reason when invalid. */
  checkTarget(y: ArrayLike<number>, outputs: number): string | undefined;
  /** ℓ = −log p(y | f). */
  loss(f: ArrayLike<number>, y: ArrayLike<number>): number;
  /** ∂ℓ/∂f, written into `out`. */
  outputGradient(f: ArrayLike<number>, y: ArrayLike<number>, out: Float64Array): void;
  /** H = E_y[∇ℓ ∇ℓᵀ] as a dense [o, o] matrix. */
  outputFisher(f: ArrayLike<number>): Float64Array;
  /** Every outcome with its probability, where y is discrete and few (tests, exact expectations). */
  outcomes?(f: ArrayLike<number>): { y: number[]; p: number }[];
  /**
   * A target ŷ ~ p(· | f) drawn from the uniforms u(0), u(1), … ∈ [0, 1):
   * the recipe the GPU head follows too (shaders/likelihood.wgsl).
   */
  sample(f: ArrayLike<number>, u: (j: number) => number): number[];
  /** How many columns the factor S of H = S Sᵀ has. */
  factorColumns(outputs: number): number;
  /** Column c of S, H = S Sᵀ: the output gradient of the `exact` kind's virtual sample c. */
  factorColumn(f: ArrayLike<number>, c: number, out: Float64Array): void;
}

function softmax(f: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let o = 0; o < f.length; o++) max = Math.max(max, f[o]!);
  const p = new Float64Array(f.length);
  let s = 0;
  for (let o = 0; o < f.length; o++) s += p[o] = Math.exp(f[o]! - max);
  for (let o = 0; o < f.length; o++) p[o]! /= s;
  return p;
}

const categorical = (): Likelihood => ({
  spec: { type: 'categorical' },
  targets: 'labels',
  precision: 1,
  checkTarget: (y, outputs) => {
    const c = y[0]!;
    return Number.isInteger(c) && c >= 0 && c < outputs ? undefined : `label ${c} is not a class in [0, ${outputs})`;
  },
  loss: (f, y) => {
    let max = -Infinity;
    for (let o = 0; o < f.length; o++) max = Math.max(max, f[o]!);
    let s = 0;
    for (let o = 0; o < f.length; o++) s += Math.exp(f[o]! - max);
    return max + Math.log(s) - f[y[0]!]!;
  },
  outputGradient: (f, y, out) => {
    out.set(softmax(f));
    out[y[0]!]! -= 1;
  },
  outputFisher: (f) => {
    const p = softmax(f);
    const k = p.length;
    const h = new Float64Array(k * k);
    for (let o = 0; o < k; o++) for (let q = 0; q < k; q++) h[o * k + q] = (o === q ? p[o]! : 0) - p[o]! * p[q]!;
    return h;
  },
  outcomes: (f) => Array.from(softmax(f), (p, c) => ({ y: [c], p })),
  // Inverse CDF: the first class whose cumulative probability exceeds u.
  sample: (f, u) => {
    const p = softmax(f);
    const target = u(0);
    let cumulative = 0;
    for (let c = 0; c < p.length; c++) {
      cumulative += p[c]!;
      if (target < cumulative) return [c];
    }
    return [p.length - 1];
  },
  factorColumns: (outputs) => outputs,
  // S = diag(√p) − p √pᵀ: column c is √p_c (e_c − p).
  factorColumn: (f, c, out) => {
    const p = softmax(f);
    const r = Math.sqrt(p[c]!);
    for (let o = 0; o < p.length; o++) out[o] = r * ((o === c ? 1 : 0) - p[o]!);
  },
});

const gaussian = (sigma: number): Likelihood => ({
  spec: { type: 'gaussian', sigma },
  targets: 'values',
  precision: 1 / (sigma * sigma),
  checkTarget: () => undefined,
  loss: (f, y) => {
    let s = 0;
    for (let o = 0; o < f.length; o++) s += (f[o]! - y[o]!) ** 2;
    return s / (2 * sigma * sigma) + f.length * Math.log(sigma * Math.sqrt(2 * Math.PI));
  },
  outputGradient: (f, y, out) => {
    for (let o = 0; o < f.length; o++) out[o] = (f[o]! - y[o]!) / (sigma * sigma);
  },
  outputFisher: (f) => {
    const k = f.length;
    const h = new Float64Array(k * k);
    for (let o = 0; o < k; o++) h[o * k + o] = 1 / (sigma * sigma);
    return h;
  },
  // ŷ_o = f_o + σ z_o, z_o standard normal by Box–Muller from draws 2o and 2o + 1.
  sample: (f, u) => Array.from({ length: f.length }, (_, o) => f[o]! + sigma * Math.sqrt(-2 * Math.log(1 - u(2 * o))) * Math.cos(2 * Math.PI * u(2 * o + 1))),
  factorColumns: (outputs) => outputs,
  // S = I/σ.
  factorColumn: (f, c, out) => {
    for (let o = 0; o < f.length; o++) out[o] = o === c ? 1 / sigma : 0;
  },
});

// Independent Bernoulli outputs with logits f: p(y_o = 1) = σ(f_o).
const bernoulli = (): Likelihood => ({
  spec: { type: 'bernoulli' },
  targets: 'values',
  precision: 1,
  checkTarget: (y) => {
    for (let o = 0; o < y.length; o++) if (!(y[o]! >= 0 && y[o]! <= 1)) return `target ${y[o]} is not in [0, 1]`;
    return undefined;
  },
  loss: (f, y) => {
    let s = 0;
    for (let o = 0; o < f.length; o++) s += softplus(f[o]!) - y[o]! * f[o]!;
    return s;
  },
  outputGradient: (f, y, out) => {
    for (let o = 0; o < f.length; o++) out[o] = sigmoid(f[o]!) - y[o]!;
  },
  outputFisher: (f) => {
    const k = f.length;
    const h = new Float64Array(k * k);
    for (let o = 0; o < k; o++) {
      const p = sigmoid(f[o]!);
      h[o * k + o] = p * (1 - p);
    }
    return h;
  },
  outcomes: (f) => {
    const k = f.length;
    if (k > 16) throw new RangeError(`enumerating 2^${k} Bernoulli outcomes is not sensible`);
    const out: { y: number[]; p: number }[] = [];
    for (let bits = 0; bits < 1 << k; bits++) {
      const y: number[] = [];
      let p = 1;
      for (let o = 0; o < k; o++) {
        const yo = (bits >> o) & 1;
        const s = sigmoid(f[o]!);
        y.push(yo);
        p *= yo ? s : 1 - s;
      }
      out.push({ y, p });
    }
    return out;
  },
  sample: (f, u) => Array.from({ length: f.length }, (_, o) => (u(o) < sigmoid(f[o]!) ? 1 : 0)),
  factorColumns: (outputs) => outputs,
  // S = diag(√(p(1 − p))).
  factorColumn: (f, c, out) => {
    for (let o = 0; o < f.length; o++) {
      const p = sigmoid(f[o]!);
      out[o] = o === c ? Math.sqrt(p * (1 - p)) : 0;
    }
  },
});

/** The table: likelihood type → constructor from its spec. */
export const LIKELIHOODS: { [T in LikelihoodType]: (spec: Extract<LikelihoodSpec, { type: T }>) => Likelihood } = {
  categorical: () => categorical(),
  gaussian: (spec) => gaussian(spec.sigma),
  bernoulli: () => bernoulli(),
};

export const LIKELIHOOD_TYPES = Object.keys(LIKELIHOODS) as LikelihoodType[];

export function likelihoodOf(spec: LikelihoodSpec): Likelihood {
  return (LIKELIHOODS[spec.type] as (s: LikelihoodSpec) => Likelihood)(spec);
}
