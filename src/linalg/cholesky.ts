/**
 * Dense symmetric positive-definite solves in float64 on the host (DESIGN.md
 * §3): Cholesky factorisation, then two triangular solves. A pivot that is
 * not positive is a clear error naming it, never a NaN.
 */

/** x with (A + damping·I) x = g, A [p, p] row-major, symmetric (only its lower triangle is read). */
export function choleskySolve(a: ArrayLike<number>, p: number, g: ArrayLike<number>, damping = 0): Float64Array {
  const l = new Float64Array(p * p);
  for (let j = 0; j < p; j++) {
    let d = a[j * p + j]! + damping;
    for (let k = 0; k < j; k++) d -= l[j * p + k]! ** 2;
    if (!(d > 0)) throw new RangeError(`F + damping·I is not positive definite (pivot ${j} is ${d}); pass a larger damping`);
    const ljj = Math.sqrt(d);
    l[j * p + j] = ljj;
    for (let i = j + 1; i < p; i++) {
      let s = a[i * p + j]!;
      for (let k = 0; k < j; k++) s -= l[i * p + k]! * l[j * p + k]!;
      l[i * p + j] = s / ljj;
    }
  }
  const y = new Float64Array(p);
  for (let i = 0; i < p; i++) {
    let s = g[i]!;
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
