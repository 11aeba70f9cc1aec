/** The float64 symmetric eigensolver and Cholesky solve on matrices whose answers are known or checkable. */
import { describe, expect, it } from 'vitest';
import { choleskySolve } from '../../src/linalg/cholesky.js';
import { symmetricEigen } from '../../src/linalg/eigen.js';
import { Rng } from '../../src/model/random.js';

/** max |A V − V Λ| and max |VᵀV − I|. */
function residuals(a: Float64Array, n: number, values: Float64Array, vectors: Float64Array): { equation: number; orthonormal: number } {
  let equation = 0;
  let orthonormal = 0;
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < n; j++) {
      let av = 0;
      let vtv = 0;
      for (let k = 0; k < n; k++) {
        av += a[r * n + k]! * vectors[k * n + j]!;
        vtv += vectors[k * n + r]! * vectors[k * n + j]!;
      }
      equation = Math.max(equation, Math.abs(av - vectors[r * n + j]! * values[j]!));
      orthonormal = Math.max(orthonormal, Math.abs(vtv - (r === j ? 1 : 0)));
    }
  }
  return { equation, orthonormal };
}

function randomSymmetric(n: number, rng: Rng): Float64Array {
  const b = Float64Array.from(rng.normals(n * n));
  const a = new Float64Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) a[r * n + c] = b[r * n + c]! + b[c * n + r]!;
  return a;
}

describe('symmetricEigen', () => {
  it.each([1, 2, 3, 7, 40, 97])('A V = V Λ and Vᵀ V = I for a random symmetric %i × %i, eigenvalues descending', (n) => {
    const a = randomSymmetric(n, new Rng(n));
    const { values, vectors } = symmetricEigen(a, n);
    const scale = Math.max(...Array.from(values, Math.abs));
    const r = residuals(a, n, values, vectors);
    expect(r.equation / scale).toBeLessThan(1e-12);
    expect(r.orthonormal).toBeLessThan(1e-12);
    for (let k = 1; k < n; k++) expect(values[k]!).toBeLessThanOrEqual(values[k - 1]!);
    // The trace is the sum of the eigenvalues.
    let trace = 0;
    for (let k = 0; k < n; k++) trace += a[k * n + k]!;
    expect(values.reduce((s, x) => s + x, 0)).toBeCloseTo(trace, 9);
  });

  it('repeated eigenvalues, a rank-one matrix and zero: orthonormal vectors all the same', () => {
    const n = 6;
    const u = Float64Array.from(new Rng(3).normals(n));
    const rankOne = Float64Array.from({ length: n * n }, (_, k) => u[Math.floor(k / n)]! * u[k % n]!);
    const norm2 = u.reduce((s, x) => s + x * x, 0);
    for (const [a, expected] of [
      [rankOne, [norm2, 0, 0, 0, 0, 0]],
      [Float64Array.from({ length: n * n }, (_, k) => (Math.floor(k / n) === k % n ? 2 : 0)), [2, 2, 2, 2, 2, 2]],
      [new Float64Array(n * n), [0, 0, 0, 0, 0, 0]],
    ] as const) {
      const { values, vectors } = symmetricEigen(a, n);
      values.forEach((v, k) => expect(v).toBeCloseTo(expected[k]!, 12));
      expect(residuals(a, n, values, vectors).orthonormal).toBeLessThan(1e-12);
    }
  });

  it('reads the lower triangle and refuses non-finite entries', () => {
    const a = Float64Array.of(2, 99, 1, 3); // upper entry 99 ignored: [[2, 1], [1, 3]]
    const { values } = symmetricEigen(a, 2);
    expect(values[0]).toBeCloseTo((5 + Math.sqrt(5)) / 2, 12);
    expect(() => symmetricEigen(Float64Array.of(1, 0, NaN, 1), 2)).toThrow(/entry \(1, 0\) is NaN/);
  });
});

describe('choleskySolve', () => {
  it('solves (A + λI) x = g and names a pivot that is not positive', () => {
    const n = 9;
    const b = Float64Array.from(new Rng(8).normals(n * n));
    const a = new Float64Array(n * n);
    for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) for (let k = 0; k < n; k++) a[r * n + c]! += b[k * n + r]! * b[k * n + c]!;
    const g = Float64Array.from(new Rng(9).normals(n));
    const x = choleskySolve(a, n, g, 0.5);
    for (let r = 0; r < n; r++) {
      let s = 0.5 * x[r]!;
      for (let c = 0; c < n; c++) s += a[r * n + c]! * x[c]!;
      expect(s).toBeCloseTo(g[r]!, 10);
    }
    expect(() => choleskySolve(new Float64Array(4), 2, [1, 1])).toThrow(/pivot 0 is 0/);
  });
});
