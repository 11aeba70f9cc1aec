/**
 * Optimisers for training: their settings, defaults, and the per-step
 * hyper-parameters both engines apply (the GPU in shaders/optimizer.wgsl,
 * the CPU reference in float64 in cpu.ts).
 */

export type OptimizerSpec =
  | { type: 'sgd'; learningRate: number; momentum?: number }
  | { type: 'adam'; learningRate: number; beta1?: number; beta2?: number; epsilon?: number };

export interface ResolvedOptimizer {
  type: 'sgd' | 'adam';
  learningRate: number;
  momentum: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** PyTorch's defaults: SGD without momentum; Adam β = (0.9, 0.999), ε = 1e-8. */
export function resolveOptimizer(spec: OptimizerSpec): ResolvedOptimizer {
  if (!(spec.learningRate > 0) || !Number.isFinite(spec.learningRate)) throw new RangeError(`learning rate must be a positive number, got ${spec.learningRate}`);
  const r: ResolvedOptimizer =
    spec.type === 'sgd'
      ? { type: 'sgd', learningRate: spec.learningRate, momentum: spec.momentum ?? 0, beta1: 0, beta2: 0, epsilon: 0 }
      : { type: 'adam', learningRate: spec.learningRate, momentum: 0, beta1: spec.beta1 ?? 0.9, beta2: spec.beta2 ?? 0.999, epsilon: spec.epsilon ?? 1e-8 };
  for (const k of ['momentum', 'beta1', 'beta2'] as const) {
    if (!(r[k] >= 0 && r[k] < 1)) throw new RangeError(`${k} must be in [0, 1), got ${r[k]}`);
  }
  return r;
}

/** Adam's bias corrections 1 − β^t at step t (1-based). */
export function biasCorrections(o: ResolvedOptimizer, t: number): { correction1: number; correction2: number } {
  return { correction1: 1 - o.beta1 ** t, correction2: 1 - o.beta2 ** t };
}

/**
 * The gradient of a quadratic penalty Σ_t (λ_t/2) Σ_i w_{t,i} (θ_i − θ*_{t,i})²
 * in the form both engines add: scale ⊙ θ − center, with
 * scale = Σ_t λ_t w_t and center = Σ_t λ_t w_t ⊙ θ*_t.
 */
export interface PenaltyGradient {
  scale: Float32Array;
  center: Float32Array;
  /**
   * Terms weight · (G ⊗ A)(θ_l − θ*_l) of K-FAC Fishers, per layer: the
   * gradient weight · G D A with D = θ_l − θ*_l as the augmented [W | b]
   * [outputs, inputs (+1)] (row-major W in θ, then the bias).
   */
  kronecker?: readonly KroneckerPenalty[];
  /** Terms weight · M (θ − θ*) of dense Fishers M [P, P]. */
  dense?: readonly DensePenalty[];
}

export interface KroneckerPenalty {
  /** θ offset of the layer's weight; its [W | b] is [outputs, inputs + (bias ? 1 : 0)]. */
  offset: number;
  inputs: number;
  outputs: number;
  bias: boolean;
  weight: number;
  /** A [ia, ia] and G [outputs, outputs], symmetric, row-major. */
  a: Float32Array;
  g: Float32Array;
  /** θ*_l: the layer's slice of θ* in θ's layout [outputs·inputs (+ outputs)]. */
  center: Float32Array;
}

export interface DensePenalty {
  weight: number;
  /** M [P, P], symmetric, row-major. */
  matrix: Float32Array;
  center: Float32Array;
}

/** Columns of a Kronecker term's augmented [W | b]. */
export function penaltyColumns(k: KroneckerPenalty): number {
  return k.inputs + (k.bias ? 1 : 0);
}
