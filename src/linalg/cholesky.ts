/**
 * Dense symmetric positive-definite solves in float64 on the host (DESIGN.md
 * §3): Cholesky factorisation, then two triangular solves. A pivot that is
 * not positive is a clear error naming it, never a NaN.
 */

/** A matrix that is not positive definite at the damping asked: where the factorisation broke down. */
export class NotPositiveDefiniteError extends RangeError {
  constructor(
    readonly pivot: number,
    readonly value: number,
    where?: string,
  ) {
    super(`${where ? `${where}: ` : ''}F + damping·I is not positive definite (pivot ${pivot} is ${value}); pass a larger damping`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/** The lower-triangular L with L Lᵀ = A + damping·I, A [p, p] row-major symmetric (only its lower triangle is read). */
export function choleskyFactor(a: ArrayLike<number>, p: number, damping = 0): Float64Array {
  const l = new Float64Array(p * p);
  for (let j = 0; j < p; j++) {
    let d = a[j * p + j]! + damping;
    for (let k = 0; k < j; k++) d -= l[j * p + k]! ** 2;
    if (!(d > 0)) throw new NotPositiveDefiniteError(j, d);
    const ljj = Math.sqrt(d);
    l[j * p + j] = ljj;
    for (let i = j + 1; i < p; i++) {
      let s = a[i * p + j]!;
      for (let k = 0; k < j; k++) s -= l[i * p + k]! * l[j * p + k]!;
      l[i * p + j] = s / ljj;
    }
  }
  return l;
}

/** x with L Lᵀ x = g. */
export function choleskySolveFactored(l: Float64Array, p: number, g: ArrayLike<number>, offset = 0): Float64Array {
  const y = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    let s = g[offset + i]!;
    for (let k = 0; k < i; k++) s -= l[i * p + k]! * y[k]!;
    y[i] = s / l[i * p + i]!;
  }
  const x = new Float64Array(p);
  for (let i = p - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < p; k++) s -= l[k * p + i]! * x[k]!;
    x[i] = s / l[i * p + i]!;
  }
  return x;
}

/** log det(L Lᵀ) = 2 Σ log L_ii. */
export function choleskyLogdet(l: Float64Array, p: number): number {
  let s = 0;
  for (let i = 0; i < p; i++) s += Math.log(l[i * p + i]!);
  return 2 * s;
}

/** x with (A + damping·I) x = g, A [p, p] row-major, symmetric (only its lower triangle is read). */
export function choleskySolve(a: ArrayLike<number>, p: number, g: ArrayLike<number>, damping = 0): Float64Array {
  return choleskySolveFactored(choleskyFactor(a, p, damping), p, g);
}

/** A v for A [rows, cols] row-major. */
export function matVec(a: ArrayLike<number>, rows: number, cols: number, v: ArrayLike<number>, offset = 0): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += a[r * cols + c]! * v[offset + c]!;
    out[r] = s;
  }
  return out;
}

/** L⁻¹ for lower-triangular L [p, p] row-major (its upper triangle is not read), by forward substitution column by column. */
export function lowerInverse(l: ArrayLike<number>, p: number): Float64Array {
  const inv = new Float64Array(p * p);
  for (let j = 0; j < p; j++) {
    inv[j * p + j] = 1 / l[j * p + j]!;
    for (let i = j + 1; i < p; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= l[i * p + k]! * inv[k * p + j]!;
      inv[i * p + j] = s / l[i * p + i]!;
    }
  }
  return inv;
}
