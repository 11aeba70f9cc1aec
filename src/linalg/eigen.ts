/**
 * The symmetric eigenproblem in float64 on the host (DESIGN.md §3): the
 * K-FAC factors and the low-rank sketches are small (≤ a few thousand), and
 * float64 here is cheaper than any device round trip. Householder reduction
 * to tridiagonal form, then the QL algorithm with implicit shifts (the
 * EISPACK tred2/tql2 pair, as in JAMA), O(n³) with a small constant. The
 * eigenvectors are orthonormal to rounding even where eigenvalues repeat.
 */

export interface SymmetricEigen {
  /** Eigenvalues, descending. */
  values: Float64Array;
  /** n × n row-major; column j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
}

/** The eigendecomposition A = V diag(λ) Vᵀ of a symmetric A [n, n] (row-major; its lower triangle is read). */
export function symmetricEigen(a: ArrayLike<number>, n: number): SymmetricEigen {
  if (a.length !== n * n) throw new RangeError(`matrix has ${a.length} entries, expected ${n}² = ${n * n}`);
  const v = new Float64Array(n * n);
  // Symmetrise from the lower triangle: callers may hold only it.
  for (let r = 0; r < n; r++) {
    for (let c = 0; c <= r; c++) {
      const x = a[r * n + c]!;
      if (!Number.isFinite(x)) throw new RangeError(`matrix entry (${r}, ${c}) is ${x}`);
      v[r * n + c] = v[c * n + r] = x;
    }
  }
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  // Held as Vᵀ (eigenvectors as rows), so that both stages run along memory.
  const vt = v;
  if (n > 0) {
    tridiagonalize(vt, d, e, n);
    diagonalize(vt, d, e, n);
  }
  // Descending order, vectors with them.
  const order = Array.from({ length: n }, (_, k) => k).sort((i, j) => d[j]! - d[i]!);
  const values = Float64Array.from(order, (k) => d[k]!);
  const vectors = new Float64Array(n * n);
  for (let c = 0; c < n; c++) {
    const row = order[c]! * n;
    for (let r = 0; r < n; r++) vectors[r * n + c] = vt[row + r]!;
  }
  return { values, vectors };
}

/** Householder reduction of V (in place) to tridiagonal form: d the diagonal, e the subdiagonal; V holds the transformation. */
function tridiagonalize(v: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  // Element (r, c) lives at c·n + r: the inner loops, which run down columns, run along memory. The
  // symmetric input is its own transpose, and V comes out transposed, as diagonalize rotates it.
  const at = (r: number, c: number) => c * n + r;
  for (let j = 0; j < n; j++) d[j] = v[at(n - 1, j)]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = v[at(i - 1, j)]!;
        v[at(i, j)] = 0;
        v[at(j, i)] = 0;
      }
    } else {
      // The Householder vector, scaled against overflow.
      for (let k = 0; k < i; k++) {
        d[k]! /= scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // Apply the similarity transformation to the remaining columns.
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        v[at(j, i)] = f;
        g = e[j]! + v[at(j, j)]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[at(k, j)]! * d[k]!;
          e[k]! += v[at(k, j)]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j]! /= h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j]! -= hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) v[at(k, j)]! -= f * e[k]! + g * d[k]!;
        d[j] = v[at(i - 1, j)]!;
        v[at(i, j)] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    v[at(n - 1, i)] = v[at(i, i)]!;
    v[at(i, i)] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[at(k, i + 1)]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[at(k, i + 1)]! * v[at(k, j)]!;
        for (let k = 0; k <= i; k++) v[at(k, j)]! -= g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) v[at(k, i + 1)] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[at(n - 1, j)]!;
    v[at(n - 1, j)] = 0;
  }
  v[at(n - 1, n - 1)] = 1;
  e[0] = 0;
}

/** QL iterations with implicit shifts on the tridiagonal (d, e), rotating the rows of Vᵀ along: d ends as the eigenvalues. */
function diagonalize(vt: Float64Array, d: Float64Array, e: Float64Array, n: number): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]!) > eps * tst1) m++;
    if (m > l) {
      let iterations = 0;
      do {
        if (++iterations > 60) throw new Error('symmetric eigensolver did not converge in 60 QL iterations');
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i]! -= h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          const [ri, rj] = [i * n, (i + 1) * n];
          for (let k = 0; k < n; k++) {
            h = vt[rj + k]!;
            vt[rj + k] = s * vt[ri + k]! + c * h;
            vt[ri + k] = c * vt[ri + k]! - s * h;
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}
