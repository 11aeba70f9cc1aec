/**
 * Quadratic penalties that pull θ towards earlier tasks' optima, as the
 * gradient form the engines add to every step (scale ⊙ θ − center):
 *
 *   EWC  Σ_t (λ/2) Σ_i F_{t,i} (θ_i − θ*_{t,i})²   gradient λ Σ_t F_t ⊙ (θ − θ*_t)
 *   L2   Σ_t (λ/2) ‖θ − θ*_t‖²                     gradient λ Σ_t (θ − θ*_t)
 *
 * summed over the earlier tasks t, each with its own diagonal Fisher F_t and
 * optimum θ*_t (Kirkpatrick et al. 2017).
 */
import type { PenaltyGradient } from '../engine/optimizer.js';

export interface Anchor {
  /** θ*_t, the parameters after task t. */
  theta: ArrayLike<number>;
  /** diag(F_t) for EWC; absent for L2 (weights 1). */
  fisher?: ArrayLike<number>;
}

/** The gradient form of Σ_t (λ/2) Σ_i w_{t,i} (θ_i − θ*_{t,i})², w = F_t or 1. */
export function penaltyGradient(anchors: readonly Anchor[], lambda: number, p: number): PenaltyGradient {
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new RangeError(`penalty strength λ must be a non-negative number, got ${lambda}`);
  const scale = new Float64Array(p);
  const center = new Float64Array(p);
  for (const a of anchors) {
    if (a.theta.length !== p || (a.fisher && a.fisher.length !== p)) throw new RangeError(`an anchor has the wrong length (P = ${p})`);
    for (let i = 0; i < p; i++) {
      const w = lambda * (a.fisher ? a.fisher[i]! : 1);
      scale[i]! += w;
      center[i]! += w * a.theta[i]!;
    }
  }
  return { scale: Float32Array.from(scale), center: Float32Array.from(center) };
}

/** The penalty's value at θ, for reporting: Σ_t (λ/2) Σ_i w_{t,i} (θ_i − θ*_{t,i})². */
export function penaltyValue(anchors: readonly Anchor[], lambda: number, theta: ArrayLike<number>): number {
  let s = 0;
  for (const a of anchors) for (let i = 0; i < theta.length; i++) s += (a.fisher ? a.fisher[i]! : 1) * (theta[i]! - a.theta[i]!) ** 2;
  return 0.5 * lambda * s;
}
