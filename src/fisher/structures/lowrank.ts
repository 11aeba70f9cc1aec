/**
 * `lowrank` (DESIGN.md §1): the top-k eigenpairs of F, F ≈ V diag(λ) Vᵀ, by
 * randomized subspace iteration over streamed passes of the data, F never
 * formed. A basis Q of k' = k + oversampling orthonormal rows (at first
 * random); each pass forms the sketch Y = F Q (on the device:
 * c Σ_n g_n (g_nᵀ Q), per batch two products with the per-sample gradient
 * rows), then on the host in float64 the Rayleigh–Ritz step: the k' × k'
 * matrix T = Q F Qᵀ = Q Yᵀ, its eigenpairs (the Ritz values and, through Q,
 * the Ritz vectors), and the next basis Q = orth(Y). It stops when the top-k
 * Ritz values move less than 1e-4·λ₁ between passes, or after `passes`
 * (default 30; the result says when it stopped unconverged). Where the
 * gradients span at most k' dimensions (N·M ≤ k') the second pass is exact.
 * The first pass only sees a random subspace, so at least two passes run.
 * Output `eigenvalues` [k] (descending) and `eigenvectors` [k, P].
 */
import type { Tensor } from '../../io/dtypes.js';
import { InputError } from '../../layers/errors.js';
import { symmetricEigen } from '../../linalg/eigen.js';
import { dot, orthonormalizeRows } from '../../linalg/orthonormal.js';
import type { ParameterLayout } from '../../model/layout.js';
import { Rng } from '../../model/random.js';
import { CompensatedSum } from '../accumulator.js';
import { BaseFisher, cast, checkLength, type FileDtype, type FisherInfo } from '../result.js';
import { kindScale, type StructureType } from './structure.js';

/** Extra sketch vectors beyond the rank asked for: they make the top k converge faster. */
export const OVERSAMPLING = 10;
/** Relative change of the top-k Ritz values between passes below which the iteration has converged. */
export const RITZ_TOLERANCE = 1e-4;
/** The largest sketch held on the host, k'·P entries (each held about four times in float64). */
export const MAX_SKETCH_ENTRIES = 2 ** 26;

/** How the iteration ended. */
export interface LowRankReport {
  rank: number;
  /** Passes over the data. */
  passes: number;
  converged: boolean;
}

/** F ≈ V diag(λ) Vᵀ with orthonormal rows of V. */
export class LowRankFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
    /** λ [k], descending. */
    readonly eigenvalues: Float64Array,
    /** V [k, P] row-major: row j is the unit eigenvector of λ_j. */
    readonly eigenvectors: Float64Array,
    readonly report: LowRankReport,
  ) {
    super(info, layout);
    checkLength(eigenvectors, eigenvalues.length * layout.total, 'eigenvectors');
  }

  get rank(): number {
    return this.eigenvalues.length;
  }

  #row(j: number): Float64Array {
    return this.eigenvectors.subarray(j * this.size, (j + 1) * this.size);
  }

  diagonal(): Float64Array {
    const out = new Float64Array(this.size);
    for (let j = 0; j < this.rank; j++) {
      const v = this.#row(j);
      const l = this.eigenvalues[j]!;
      for (let i = 0; i < this.size; i++) out[i]! += l * v[i]! * v[i]!;
    }
    return out;
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    const out = new Float64Array(this.size);
    for (let j = 0; j < this.rank; j++) {
      const row = this.#row(j);
      const c = this.eigenvalues[j]! * dot(row, v);
      for (let i = 0; i < this.size; i++) out[i]! += c * row[i]!;
    }
    return out;
  }

  /** (V Λ Vᵀ + δI)⁻¹ g = V (Λ + δ)⁻¹ Vᵀ g + (g − V Vᵀ g)/δ: needs δ > 0 unless the rank is P. */
  solve(g: ArrayLike<number>, options: { damping?: number } = {}): Float64Array {
    checkLength(g, this.size, 'g');
    const damping = options.damping ?? 0;
    const full = this.rank === this.size;
    if (!(damping > 0) && !full) throw new RangeError(`a rank-${this.rank} Fisher of P = ${this.size} is singular: pass a positive damping`);
    const out = new Float64Array(this.size);
    if (!full) for (let i = 0; i < this.size; i++) out[i] = g[i]! / damping;
    for (let j = 0; j < this.rank; j++) {
      const row = this.#row(j);
      const d = this.eigenvalues[j]! + damping;
      if (!(d > 0)) throw new RangeError(`F + damping·I is singular (eigenvalue ${d}); pass a positive damping`);
      const c = dot(row, g) * (1 / d - (full ? 0 : 1 / damping));
      for (let i = 0; i < this.size; i++) out[i]! += c * row[i]!;
    }
    return out;
  }

  override trace(): number {
    return this.eigenvalues.reduce((s, x) => s + x, 0);
  }

  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map([
      ['eigenvalues', { dtype, shape: [this.rank], data: cast(this.eigenvalues, dtype) }],
      ['eigenvectors', { dtype, shape: [this.rank, this.size], data: cast(this.eigenvectors, dtype) }],
    ]);
  }
}

export const lowrank: StructureType = {
  name: 'lowrank',
  engineWork: ['lowrank'],
  // The basis (float64 and float32), the sketch's compensated sum and its result, and the k eigenvectors.
  hostBytes: (model, o) => {
    const p = model.parameterCount;
    const width = Math.min(p, o.rank + OVERSAMPLING);
    return width * p * (8 + 4 + 3 * 8) + o.rank * p * 8;
  },
  start(model, options) {
    const p = model.parameterCount;
    const k = options.rank;
    if (k > p) throw new InputError(`rank ${k} exceeds the ${p} parameters`);
    const width = Math.min(p, k + OVERSAMPLING);
    if (width * p > MAX_SKETCH_ENTRIES) {
      throw new InputError(`a rank-${k} sketch of P = ${p} parameters holds ${width}·${p} = ${(width * p).toExponential(2)} entries, more than the ${MAX_SKETCH_ENTRIES.toExponential(2)} supported; ask for a smaller rank or use structure "diag" or "kfac"`);
    }
    const rng = new Rng(options.seed ?? 0x5eed);
    const fresh = () => Float64Array.from(rng.normals(p));
    let basis: Float64Array = new Float64Array(width * p);
    for (let r = 0; r < width; r++) basis.set(fresh(), r * p);
    orthonormalizeRows(basis, width, p, fresh);
    let basis32 = Float32Array.from(basis);
    let sketch = new CompensatedSum(width * p);
    let rows = 0;
    let passes = 0;
    let previous: Float64Array | undefined;
    let final: { values: Float64Array; vectors: Float64Array; converged: boolean } | undefined;
    return {
      async add(loaded, batch, labels) {
        if (passes === 0) rows += batch.n * labels.length;
        sketch.add(await loaded.sketchSum(batch, labels, basis32, width));
      },
      nextPass() {
        passes++;
        const y = sketch.result();
        // Rayleigh–Ritz: T = Q F Qᵀ, symmetric up to rounding.
        const t = new Float64Array(width * width);
        for (let i = 0; i < width; i++) {
          for (let j = 0; j <= i; j++) {
            const v = 0.5 * (dot(basis.subarray(i * p, (i + 1) * p), y.subarray(j * p, (j + 1) * p)) + dot(basis.subarray(j * p, (j + 1) * p), y.subarray(i * p, (i + 1) * p)));
            t[i * width + j] = t[j * width + i] = v;
          }
        }
        const ritz = symmetricEigen(t, width);
        const top = ritz.values.subarray(0, k);
        // Exact once the basis has seen the whole range of F (at most `rows` dimensions).
        const exact = passes >= 2 && rows <= width;
        const moved = previous ? Math.max(...Array.from(top, (v, j) => Math.abs(v - previous![j]!))) : Infinity;
        const converged = exact || (passes >= 2 && moved <= RITZ_TOLERANCE * Math.abs(top[0]!));
        previous = Float64Array.from(top);
        if (converged || passes >= options.passes) {
          // Ritz vectors: V_m = Σ_j W[j, m] q_j.
          const vectors = new Float64Array(k * p);
          for (let m = 0; m < k; m++) {
            const out = vectors.subarray(m * p, (m + 1) * p);
            for (let j = 0; j < width; j++) {
              const w = ritz.vectors[j * width + m]!;
              const q = basis.subarray(j * p, (j + 1) * p);
              for (let i = 0; i < p; i++) out[i]! += w * q[i]!;
            }
          }
          final = { values: Float64Array.from(top), vectors, converged };
          return false;
        }
        basis = y;
        orthonormalizeRows(basis, width, p, fresh);
        basis32 = Float32Array.from(basis);
        sketch = new CompensatedSum(width * p);
        return true;
      },
      result(info) {
        if (!final) throw new Error('the low-rank iteration has not finished');
        const c = kindScale(info);
        const report = { rank: k, passes, converged: final.converged };
        return new LowRankFisher({ ...info, lowrank: report }, model.layout, final.values.map((v) => v * c), final.vectors, report);
      },
    };
  },
};
