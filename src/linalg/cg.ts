/**
 * Conjugate gradients for (A + δI) x = b with A symmetric positive
 * semi-definite, known only by its products: the general fallback of every
 * Fisher's solve. Stops when ‖r‖ ≤ tolerance·‖b‖ or after maxIterations;
 * a direction of non-positive curvature (A + δI not positive definite
 * there) is an error, never a division by zero.
 */
import { dot } from './orthonormal.js';

export interface CgOptions {
  damping?: number;
  /** Relative residual ‖b − (A + δI) x‖ / ‖b‖ to reach (default 1e-6). */
  tolerance?: number;
  /** Default: 10·P, at most 10,000. */
  maxIterations?: number;
}

export interface CgResult {
  x: Float64Array;
  iterations: number;
  /** ‖b − (A + δI) x‖ / ‖b‖, recomputed from x at the end (the recurrence's own drifts in floating point). */
  relativeResidual: number;
  /** The recurrence reached the tolerance within maxIterations. */
  converged: boolean;
}

export function conjugateGradients(mv: (v: Float64Array) => ArrayLike<number>, b: ArrayLike<number>, options: CgOptions = {}): CgResult {
  const p = b.length;
  const damping = options.damping ?? 0;
  const tolerance = options.tolerance ?? 1e-6;
  const most = options.maxIterations ?? Math.min(10_000, 10 * p);
  const apply = (v: Float64Array) => {
    const out = Float64Array.from(mv(v));
    for (let i = 0; i < p; i++) out[i]! += damping * v[i]!;
    return out;
  };
  const x = new Float64Array(p);
  const r = Float64Array.from(b);
  const bNorm = Math.sqrt(dot(r, r));
  if (bNorm === 0) return { x, iterations: 0, relativeResidual: 0, converged: true };
  const d = r.slice();
  let rr = dot(r, r);
  let iterations = 0;
  const reached = () => Math.sqrt(rr) <= tolerance * bNorm;
  while (iterations < most && !reached()) {
    const ad = apply(d);
    const curvature = dot(d, ad);
    if (!(curvature > 0)) {
      throw new RangeError(`F + damping·I is not positive definite along a search direction (dᵀ(F + δI)d = ${curvature} at iteration ${iterations + 1}); pass a positive damping`);
    }
    const step = rr / curvature;
    for (let i = 0; i < p; i++) {
      x[i]! += step * d[i]!;
      r[i]! -= step * ad[i]!;
    }
    const next = dot(r, r);
    const ratio = next / rr;
    rr = next;
    for (let i = 0; i < p; i++) d[i] = r[i]! + ratio * d[i]!;
    iterations++;
  }
  const ax = apply(x);
  let res = 0;
  for (let i = 0; i < p; i++) res += (b[i]! - ax[i]!) ** 2;
  return { x, iterations, relativeResidual: Math.sqrt(res) / bNorm, converged: reached() };
}
