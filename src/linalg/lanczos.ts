/**
 * The top eigenpairs of a symmetric positive semi-definite operator known
 * only by its products (a Fisher's `mv`), by the Lanczos iteration with full
 * reorthogonalisation: every new Krylov vector is projected off all earlier
 * ones (twice), so the basis stays orthonormal to rounding and no spurious
 * copies of converged eigenvalues appear. The Ritz pairs of the m × m
 * tridiagonal matrix approximate the top ones; pair j has converged when its
 * residual ‖A y − θ y‖ = |β_m s_{m,j}| is within `tolerance`·θ₁. The Krylov
 * space grows until the top k have converged, or it is all of R^P (then
 * exact). Memory: m vectors of length P.
 */
import { symmetricEigen } from './eigen.js';
import { combineRows, dot } from './orthonormal.js';

export interface LanczosOptions {
  /** Relative residual of a converged Ritz pair, against the largest Ritz value (default 1e-8). */
  tolerance?: number;
  /** Most Krylov vectors (default min(P, max(4k, k + 60))); more are never needed where P is smaller. */
  maxIterations?: number;
  /** The start vector's seed (a deterministic pseudo-random vector). */
  seed?: number;
}

export interface LanczosResult {
  /** The top k eigenvalues, descending. */
  values: Float64Array;
  /** [k, P] row-major: row j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
  /** Krylov vectors built (products with the operator). */
  iterations: number;
  converged: boolean;
  /** The largest relative residual among the k pairs. */
  residual: number;
}

/** A deterministic start vector with every component nonzero: no eigenvector is orthogonal to it by accident of structure. */
function startVector(p: number, seed: number): Float64Array {
  const v = new Float64Array(p);
  let s = (seed >>> 0) || 1;
  for (let i = 0; i < p; i++) {
    // xorshift32, mapped into [0.5, 1.5) with a random sign.
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const u = (s >>> 0) / 2 ** 32;
    v[i] = (u < 0.5 ? -1 : 1) * (0.5 + u);
  }
  return v;
}

export function lanczosTop(mv: (v: Float64Array) => ArrayLike<number>, p: number, k: number, options: LanczosOptions = {}): LanczosResult {
  if (!Number.isInteger(k) || k < 1 || k > p) throw new RangeError(`k must be a whole number from 1 to P = ${p}, got ${k}`);
  const tolerance = options.tolerance ?? 1e-8;
  const most = Math.min(p, options.maxIterations ?? Math.max(4 * k, k + 60));
  if (most < k) throw new RangeError(`maxIterations ${most} is below k = ${k}`);
  const basis = new Float64Array(most * p);
  const alpha: number[] = [];
  const beta: number[] = [];
  const first = startVector(p, options.seed ?? 0x1a2c);
  const norm0 = Math.sqrt(dot(first, first));
  for (let i = 0; i < p; i++) basis[i] = first[i]! / norm0;
  let m = 0;
  let ritz: { values: Float64Array; s: Float64Array; residual: number; converged: boolean } | undefined;
  // Check convergence every few steps: each check is an eigendecomposition of the m × m tridiagonal.
  const checkEvery = Math.max(1, Math.ceil(k / 2));
  while (m < most) {
    const q = basis.subarray(m * p, (m + 1) * p);
    const w = Float64Array.from(mv(q));
    if (w.length !== p) throw new RangeError(`the operator returned ${w.length} values, expected ${p}`);
    const a = dot(q, w);
    alpha.push(a);
    m++;
    // Full reorthogonalisation, twice: w − Q (Qᵀ w).
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < m; j++) {
        const b = basis.subarray(j * p, (j + 1) * p);
        const d = dot(b, w);
        for (let i = 0; i < p; i++) w[i]! -= d * b[i]!;
      }
    }
    const b = Math.sqrt(dot(w, w));
    const done = m === most || m === p;
    if (m >= k && (done || m % checkEvery === 0 || b === 0)) {
      ritz = ritzPairs(alpha, beta, m, k, b, tolerance);
      if (ritz.converged || done) break;
    }
    if (m === most) break;
    const scale = Math.max(Math.abs(a), ...beta.map(Math.abs), 1e-300);
    if (b > 1e-12 * scale) {
      beta.push(b);
      for (let i = 0; i < p; i++) basis[m * p + i] = w[i]! / b;
      continue;
    }
    // An invariant subspace (β ≈ 0): go on from a fresh vector orthogonal to the basis, coupled by β = 0.
    const fresh = orthogonalStart(basis, m, p, (options.seed ?? 0x1a2c) + m);
    if (!fresh) break;
    beta.push(0);
    basis.set(fresh, m * p);
  }
  ritz ??= ritzPairs(alpha, beta, m, k, 0, tolerance);
  // Ritz vectors: Q S, the top k columns of S.
  const vectors = combineRows(basis, m, p, ritz.s, m, k);
  return { values: ritz.values.slice(0, k), vectors, iterations: m, converged: ritz.converged || m === p, residual: ritz.residual };
}

/** A unit vector orthogonal to the first m rows of `basis`, or undefined where they span R^P already. */
function orthogonalStart(basis: Float64Array, m: number, p: number, seed: number): Float64Array | undefined {
  for (let attempt = 0; attempt < 4; attempt++) {
    const v = startVector(p, seed + 7919 * attempt);
    const before = Math.sqrt(dot(v, v));
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < m; j++) {
        const b = basis.subarray(j * p, (j + 1) * p);
        const d = dot(b, v);
        for (let i = 0; i < p; i++) v[i]! -= d * b[i]!;
      }
    }
    const after = Math.sqrt(dot(v, v));
    if (after > 1e-8 * before) return v.map((x) => x / after);
  }
  return undefined;
}

/** The eigenpairs of the m × m tridiagonal T (alpha on the diagonal, beta beside it), and their residuals. */
function ritzPairs(alpha: readonly number[], beta: readonly number[], m: number, k: number, nextBeta: number, tolerance: number) {
  const t = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    t[i * m + i] = alpha[i]!;
    if (i + 1 < m) t[(i + 1) * m + i] = t[i * m + i + 1] = beta[i]!;
  }
  const e = symmetricEigen(t, m);
  const top = Math.max(Math.abs(e.values[0]!), 1e-300);
  let residual = 0;
  for (let j = 0; j < k; j++) residual = Math.max(residual, Math.abs(nextBeta * e.vectors[(m - 1) * m + j]!) / top);
  return { values: e.values, s: e.vectors, residual, converged: residual <= tolerance };
}
