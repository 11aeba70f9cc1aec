/**
 * Orthonormal bases of the row space of k vectors of length P in float64
 * (the low-rank sketch's subspace iteration): classical Gram–Schmidt applied
 * twice ("twice is enough", Giraud et al. 2005), which keeps the basis
 * orthonormal to rounding where a single pass loses it. Vectors are rows of a
 * [k, P] row-major array: each is contiguous, P may be millions.
 */

/** Rows whose norm fell below this fraction of their norm before projection are dependent on the earlier ones. */
const DEPENDENT = 1e-10;

/**
 * Orthonormalises the rows of `v` [k, p] in place, in order. A row that is
 * (numerically) in the span of the rows before it is replaced by
 * `replacement(r)` (a fresh vector) and orthonormalised in turn; returns the
 * indices of the rows so replaced.
 */
export function orthonormalizeRows(v: Float64Array, k: number, p: number, replacement: (row: number) => ArrayLike<number>): number[] {
  const replaced: number[] = [];
  for (let r = 0; r < k; r++) {
    const row = v.subarray(r * p, (r + 1) * p);
    for (let attempt = 0; ; attempt++) {
      const before = norm(row);
      for (let pass = 0; pass < 2; pass++) {
        for (let q = 0; q < r; q++) {
          const basis = v.subarray(q * p, (q + 1) * p);
          const d = dot(basis, row);
          for (let i = 0; i < p; i++) row[i]! -= d * basis[i]!;
        }
      }
      const after = norm(row);
      if (before > 0 && after > DEPENDENT * before) {
        for (let i = 0; i < p; i++) row[i]! /= after;
        break;
      }
      if (attempt > 8) throw new Error(`could not extend an orthonormal basis at row ${r} of ${k} in R^${p}`);
      row.set(replacement(r));
      if (attempt === 0) replaced.push(r);
    }
  }
  return replaced;
}

/**
 * Rows Σ_j S[j, m] q_j for m < k: the vectors of a small eigenproblem's
 * eigenvectors S [rows, columns] (row-major, column m the m-th) taken back
 * through the basis q [rows, P] it was posed in (Ritz vectors). [k, P].
 */
export function combineRows(q: Float64Array, rows: number, p: number, s: ArrayLike<number>, columns: number, k: number): Float64Array {
  const out = new Float64Array(k * p);
  for (let m = 0; m < k; m++) {
    const row = out.subarray(m * p, (m + 1) * p);
    for (let j = 0; j < rows; j++) {
      const c = s[j * columns + m]!;
      if (c === 0) continue;
      const qj = q.subarray(j * p, (j + 1) * p);
      for (let i = 0; i < p; i++) row[i]! += c * qj[i]!;
    }
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}
