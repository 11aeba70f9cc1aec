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
import { combineRows, dot, orthonormalizeRows } from '../../linalg/orthonormal.js';
import type { TensorLayout } from '../../model/layout.js';
import { Rng } from '../../model/random.js';
import { CompensatedSum } from '../accumulator.js';
import { BaseFisher, cast, checkCombinable, checkDamping, checkLength, checkScale, unionInfo, type Eigenpairs, type FileDtype, type FisherInfo, type FisherMatrix } from '../result.js';
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
    layout: TensorLayout,
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

  /** Woodbury: (V Λ Vᵀ + δI)⁻¹ g = V (Λ + δ)⁻¹ Vᵀ g + (g − V Vᵀ g)/δ; needs δ > 0 unless the rank is P. */
  protected exactSolve(g: ArrayLike<number>, damping: number): { x: Float64Array; damping: number; retries: number } {
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
    return { x: out, damping, retries: 0 };
  }

  /** Its own top k (k at most its rank). */
  protected override exactEig(k: number): Eigenpairs {
    if (k > this.rank) throw new RangeError(`this low-rank Fisher holds ${this.rank} eigenpairs, fewer than k = ${k}`);
    return { values: this.eigenvalues.slice(0, k), vectors: this.eigenvectors.slice(0, k * this.size), method: 'exact', converged: true };
  }

  /** Σ_j log(λ_j + δ) + (P − k) log δ: the rest of the spectrum is taken as 0, so at the damping. */
  logdet(options: { damping?: number } = {}): number {
    const damping = checkDamping(options.damping);
    const rest = this.size - this.rank;
    if (rest > 0 && !(damping > 0)) throw new RangeError(`a rank-${this.rank} Fisher of P = ${this.size} is singular: its log-determinant needs a positive damping`);
    let s = rest > 0 ? rest * Math.log(damping) : 0;
    this.eigenvalues.forEach((x, j) => {
      if (!(x + damping > 0)) throw new RangeError(`F + damping·I is singular (eigenvalue ${j} is ${x + damping}); pass a positive damping`);
      s += Math.log(x + damping);
    });
    return s;
  }

  override trace(): number {
    return this.eigenvalues.reduce((s, x) => s + x, 0);
  }

  frobeniusNorm(): number {
    return Math.sqrt(dot(this.eigenvalues, this.eigenvalues));
  }

  scale(c: number): LowRankFisher {
    checkScale(c);
    return new LowRankFisher(this.info, this.layout, this.eigenvalues.map((x) => c * x), this.eigenvectors, this.report);
  }

  /**
   * F + F' exactly, of rank at most k + k': an orthonormal basis Q of both
   * sets of eigenvectors, the small matrix Q (F + F') Qᵀ, its eigenpairs.
   */
  override add(other: FisherMatrix): LowRankFisher {
    checkCombinable('add', this, [other]);
    const o = other as LowRankFisher;
    const p = this.size;
    const k = this.rank + o.rank;
    const q = new Float64Array(k * p);
    q.set(this.eigenvectors, 0);
    q.set(o.eigenvectors, this.rank * p);
    // Rows dependent on earlier ones are replaced by zeros-to-be: a fresh direction F + F' does not reach contributes 0.
    const rng = new Rng(k);
    orthonormalizeRows(q, k, p, () => rng.normals(p));
    // T = Q (V Λ Vᵀ + V' Λ' V'ᵀ) Qᵀ = C Λ Cᵀ + C' Λ' C'ᵀ, C = Q Vᵀ.
    const t = new Float64Array(k * k);
    for (const f of [this, o]) {
      const c = new Float64Array(k * f.rank);
      for (let a = 0; a < k; a++) for (let j = 0; j < f.rank; j++) c[a * f.rank + j] = dot(q.subarray(a * p, (a + 1) * p), f.eigenvectors.subarray(j * p, (j + 1) * p));
      for (let a = 0; a < k; a++) {
        for (let b = 0; b <= a; b++) {
          let v = 0;
          for (let j = 0; j < f.rank; j++) v += c[a * f.rank + j]! * f.eigenvalues[j]! * c[b * f.rank + j]!;
          t[a * k + b]! += v;
          if (b !== a) t[b * k + a]! += v;
        }
      }
    }
    const e = symmetricEigen(t, k);
    const vectors = combineRows(q, k, p, e.vectors, k, k);
    const report = { rank: k, passes: Math.max(this.report.passes, o.report.passes), converged: this.report.converged && o.report.converged };
    return new LowRankFisher({ ...unionInfo([this.info, o.info]), lowrank: report }, this.layout, e.values, vectors, report);
  }

  /** The top k of each shard do not give the top k of the union: refused. */
  override merge(): never {
    throw new RangeError("low-rank Fishers of shards do not merge: the top-k eigenpairs of each shard's Fisher do not determine those of their union. add() gives their exact sum (rank k + k'); or merge full or diag Fishers of the shards");
  }

  override toDense(): Float64Array {
    this.checkDenseFits();
    const p = this.size;
    const out = new Float64Array(p * p);
    for (let j = 0; j < this.rank; j++) {
      const v = this.#row(j);
      const l = this.eigenvalues[j]!;
      for (let r = 0; r < p; r++) {
        const c = l * v[r]!;
        if (c === 0) continue;
        for (let s = 0; s < p; s++) out[r * p + s]! += c * v[s]!;
      }
    }
    return out;
  }

  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map([
      ['eigenvalues', { dtype, shape: [this.rank], data: cast(this.eigenvalues, dtype) }],
      ['eigenvectors', { dtype, shape: [this.rank, this.size], data: cast(this.eigenvectors, dtype) }],
    ]);
  }
}

/**
 * The randomized subspace iteration of `lowrank`, fed with sketches: each
 * pass, the caller adds Σ g (gᵀ Q) over the data for the current basis Q
 * (`basis32`, [width, P]) — from the engine's per-sample gradients, or from
 * gradients a caller already has (fromGradients) — then calls nextPass.
 */
export class SubspaceIteration {
  readonly width: number;
  #basis: Float64Array;
  basis32: Float32Array;
  #sketch: CompensatedSum;
  #passes = 0;
  #previous: Float64Array | undefined;
  #final: { values: Float64Array; vectors: Float64Array; converged: boolean } | undefined;
  readonly #fresh: () => Float64Array;

  constructor(
    readonly p: number,
    readonly k: number,
    readonly maxPasses: number,
    seed: number,
  ) {
    this.width = Math.min(p, k + OVERSAMPLING);
    if (this.width * p > MAX_SKETCH_ENTRIES) {
      throw new InputError(`a rank-${k} sketch of P = ${p} parameters holds ${this.width}·${p} = ${(this.width * p).toExponential(2)} entries, more than the ${MAX_SKETCH_ENTRIES.toExponential(2)} supported; ask for a smaller rank or use structure "diag" or "kfac"`);
    }
    const rng = new Rng(seed);
    this.#fresh = () => Float64Array.from(rng.normals(p));
    this.#basis = new Float64Array(this.width * p);
    for (let r = 0; r < this.width; r++) this.#basis.set(this.#fresh(), r * p);
    orthonormalizeRows(this.#basis, this.width, p, this.#fresh);
    this.basis32 = Float32Array.from(this.#basis);
    this.#sketch = new CompensatedSum(this.width * p);
  }

  /** The basis Q [width, P] in float64 (basis32 is it rounded, for a device). */
  get basis(): Float64Array {
    return this.#basis;
  }

  /** Adds a batch's Σ g (gᵀ Q), [width, P]. */
  add(sketch: ArrayLike<number>): void {
    this.#sketch.add(sketch);
  }

  /** Ends a pass over the `rows` gradients; true asks for another. */
  nextPass(rows: number): boolean {
    this.#passes++;
    const { width, p, k } = this;
    const basis = this.#basis;
    const y = this.#sketch.result();
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
    const exact = this.#passes >= 2 && rows <= width;
    const previous = this.#previous;
    const moved = previous ? Math.max(...Array.from(top, (v, j) => Math.abs(v - previous[j]!))) : Infinity;
    const converged = exact || (this.#passes >= 2 && moved <= RITZ_TOLERANCE * Math.abs(top[0]!));
    this.#previous = Float64Array.from(top);
    if (converged || this.#passes >= this.maxPasses) {
      // Ritz vectors: V_m = Σ_j W[j, m] q_j.
      const vectors = combineRows(basis, width, p, ritz.vectors, width, k);
      this.#final = { values: Float64Array.from(top), vectors, converged };
      return false;
    }
    this.#basis = y;
    orthonormalizeRows(this.#basis, width, p, this.#fresh);
    this.basis32 = Float32Array.from(this.#basis);
    this.#sketch = new CompensatedSum(width * p);
    return true;
  }

  /** The Fisher, the eigenvalues times `scale` (the kind's c). */
  result(info: FisherInfo, layout: TensorLayout, scale: number): LowRankFisher {
    const final = this.#final;
    if (!final) throw new Error('the low-rank iteration has not finished');
    const report = { rank: this.k, passes: this.#passes, converged: final.converged };
    return new LowRankFisher({ ...info, lowrank: report }, layout, final.values.map((v) => v * scale), final.vectors, report);
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
    const iteration = new SubspaceIteration(p, k, options.passes, options.seed ?? 0x5eed);
    let rows = 0;
    let first = true;
    return {
      async add(loaded, batch, labels) {
        if (first) rows += batch.n * labels.length;
        iteration.add(await loaded.sketchSum(batch, labels, iteration.basis32, iteration.width));
      },
      nextPass() {
        first = false;
        return iteration.nextPass(rows);
      },
      result(info) {
        return iteration.result(info, model.layout, kindScale(info));
      },
    };
  },
  async load(file) {
    const p = file.layout.total;
    const report = file.info.lowrank;
    if (!report) throw new RangeError(`${file.path}: a lowrank Fisher file records its rank, passes and convergence in the metadata; these are missing`);
    const values = await file.values('eigenvalues', [report.rank]);
    const vectors = await file.values('eigenvectors', [report.rank, p]);
    // Stored as float32 they are orthonormal to 1e-7 only; every operation (Woodbury's solve, the
    // log-determinant) assumes V Vᵀ = I: re-orthonormalised in float64, they are, and move by rounding.
    orthonormalizeRows(vectors, report.rank, p, () => {
      throw new InputError(`${file.path}: the eigenvectors are linearly dependent`);
    });
    return new LowRankFisher(file.info, file.layout, values, vectors, report);
  },
};
