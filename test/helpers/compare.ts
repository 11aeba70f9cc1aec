/**
 * The one comparison helper of the test suite. It checks shapes first, then
 * |got − ref| ≤ atol + rtol·|ref| element-wise, or a relative Frobenius
 * error; on failure it reports the worst elements with their values, the
 * ratio to the tolerance and the tolerance itself.
 */
import { expect } from 'vitest';

type Values = ArrayLike<number>;

/** Unit roundoff of float32. */
export const F32_EPS = 2 ** -24;

/**
 * A relative tolerance for a float32 result that sums `terms` products:
 * γ_n ≈ n·u bounds it; we allow a few units of the typical √n·u growth with
 * a floor, so the tolerance grows with the work and is never a magic number.
 */
export function f32Tolerance(terms: number, safety = 16): number {
  return safety * Math.sqrt(Math.max(1, terms)) * F32_EPS;
}

function worst(length: number, score: (i: number) => number, count = 5): number[] {
  const idx = Array.from({ length }, (_, i) => i);
  idx.sort((a, b) => score(b) - score(a));
  return idx.slice(0, count);
}

function describe(what: string, got: Values, ref: Values, idx: number[], extra: (i: number) => string): string {
  return `${what}: worst elements:\n${idx.map((i) => `  [${i}] got ${got[i]} ref ${ref[i]} ${extra(i)}`).join('\n')}`;
}

/** Element-wise |got − ref| ≤ atol + rtol·|ref|; NaN anywhere fails. */
export function expectClose(got: Values, ref: Values, tol: { rtol: number; atol?: number }, what = 'values'): void {
  expect(got.length, `${what}: length`).toBe(ref.length);
  const atol = tol.atol ?? 0;
  const ratio = (i: number) => {
    const g = got[i]!;
    const r = ref[i]!;
    if (Number.isNaN(g) || Number.isNaN(r)) return Infinity;
    return Math.abs(g - r) / (atol + tol.rtol * Math.abs(r) || Number.MIN_VALUE);
  };
  let max = 0;
  for (let i = 0; i < got.length; i++) max = Math.max(max, ratio(i));
  if (max > 1) {
    const idx = worst(got.length, ratio);
    throw new Error(`${describe(what, got, ref, idx, (i) => `ratio to tolerance ${ratio(i).toExponential(2)}`)}\n  tolerance: atol ${atol} + rtol ${tol.rtol}·|ref|`);
  }
}

/** ‖got − ref‖_F / ‖ref‖_F. */
export function relativeError(got: Values, ref: Values): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < ref.length; i++) {
    num += (got[i]! - ref[i]!) ** 2;
    den += ref[i]! ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Relative Frobenius error ≤ max; reports the error and the worst elements otherwise. Returns the error. */
export function expectRelativeError(got: Values, ref: Values, max: number, what = 'values'): number {
  expect(got.length, `${what}: length`).toBe(ref.length);
  for (let i = 0; i < got.length; i++) if (!Number.isFinite(got[i]!)) throw new Error(`${what}: element ${i} is ${got[i]}`);
  const err = relativeError(got, ref);
  if (!(err <= max)) {
    const idx = worst(got.length, (i) => Math.abs(got[i]! - ref[i]!));
    throw new Error(`${describe(what, got, ref, idx, (i) => `|diff| ${Math.abs(got[i]! - ref[i]!).toExponential(2)}`)}\n  relative Frobenius error ${err.toExponential(3)} > ${max}`);
  }
  return err;
}

/** A parameter tensor's columns of a [rows, P] array (rows = 1 for a θ-shaped vector). */
function columnsOf(v: Values, offset: number, size: number, p: number): Float64Array {
  const rows = v.length / p;
  const out = new Float64Array(rows * size);
  for (let r = 0; r < rows; r++) for (let j = 0; j < size; j++) out[r * size + j] = v[r * p + offset + j]!;
  return out;
}

interface TensorLayout {
  total: number;
  entries: readonly { name: string; offset: number; size: number }[];
}

/** The largest relative Frobenius error over the parameter tensors (columns of [rows, P]); NaN anywhere is Infinity. */
export function perTensorError(got: Values, ref: Values, layout: TensorLayout): number {
  let worst = 0;
  for (const e of layout.entries) {
    const g = columnsOf(got, e.offset, e.size, layout.total);
    worst = Math.max(worst, g.every(Number.isFinite) ? relativeError(g, columnsOf(ref, e.offset, e.size, layout.total)) : Infinity);
  }
  return worst;
}

/** Relative Frobenius error ≤ max for every parameter tensor; reports the tensor and its worst elements otherwise. Returns the largest. */
export function expectPerTensor(got: Values, ref: Values, layout: TensorLayout, max: number, what: string): number {
  expect(got.length, `${what}: length`).toBe(ref.length);
  let worst = 0;
  for (const e of layout.entries) {
    worst = Math.max(worst, expectRelativeError(columnsOf(got, e.offset, e.size, layout.total), columnsOf(ref, e.offset, e.size, layout.total), max, `${what}: ${e.name}`));
  }
  return worst;
}
