/**
 * Float64 sums of many batch partials with Neumaier compensation, so that a
 * mean over 10^6 samples does not drift: each batch's float32 partial is
 * exact in float64, and the compensation carries what float64 rounding
 * drops.
 */
export class CompensatedSum {
  readonly sum: Float64Array;
  readonly #comp: Float64Array;

  constructor(length: number) {
    this.sum = new Float64Array(length);
    this.#comp = new Float64Array(length);
  }

  /** Adds `values` into elements [offset, offset + values.length). */
  add(values: ArrayLike<number>, offset = 0): void {
    const s = this.sum;
    const c = this.#comp;
    for (let k = 0; k < values.length; k++) {
      const j = offset + k;
      const x = values[k]!;
      const t = s[j]! + x;
      c[j]! += Math.abs(s[j]!) >= Math.abs(x) ? s[j]! - t + x : x - t + s[j]!;
      s[j] = t;
    }
  }

  /** The compensated total times `scale`. */
  result(scale = 1): Float64Array {
    const out = new Float64Array(this.sum.length);
    for (let j = 0; j < out.length; j++) out[j] = (this.sum[j]! + this.#comp[j]!) * scale;
    return out;
  }
}
