/**
 * Fisher matrices as objects with their operations (DESIGN.md §4): what
 * every structure answers, and what they share. Values are float64 (the
 * estimator's compensated sums); files hold float32 unless asked otherwise.
 * Vectors are flat, in the parameter order of src/model/layout.ts. Each
 * structure's class (structures/) computes what its form allows exactly
 * (a product through its factors, a solve through its eigenbasis); the rest
 * comes from here, through `mv`: conjugate gradients, Lanczos.
 */
import type { Tensor } from '../io/dtypes.js';
import { writeSafetensors } from '../io/safetensors.js';
import { conjugateGradients } from '../linalg/cg.js';
import { NotPositiveDefiniteError } from '../linalg/cholesky.js';
import { lanczosTop } from '../linalg/lanczos.js';
import { dot } from '../linalg/orthonormal.js';
import type { TensorLayout } from '../model/layout.js';
import type { FisherKind, FisherStructure, KfacMode, Reduction } from './options.js';

/** Which part of the data a Fisher was computed on (`fisher compute --shard i/k`). */
export interface ShardInfo {
  /** 1-based. */
  index: number;
  count: number;
  /** N of the whole data. */
  totalN: number;
  /** A digest of the model, the data and the options: shards of one run share it. */
  run: string;
}

/** What a Fisher matrix records of how it was computed (the file's metadata). */
export interface FisherInfo {
  kind: FisherKind;
  structure: FisherStructure;
  reduction: Reduction;
  /** Samples N. */
  n: number;
  /** Label samples per input M (1 for empirical). */
  samples: number;
  seed: number | undefined;
  backend: string;
  /** K-FAC's treatment of shared parameters (structures kfac, ekfac). */
  kfac?: KfacMode;
  /** How the low-rank iteration ended (structure lowrank). */
  lowrank?: { rank: number; passes: number; converged: boolean };
  /** The shard of the data, where only a shard was computed. */
  shard?: ShardInfo;
}

export type FileDtype = 'F32' | 'F64';

/**
 * How `solve` works: `exact` is each structure's direct method (elementwise
 * for diag; Cholesky for block and full; the Kronecker eigenbasis for kfac
 * and ekfac; Woodbury for lowrank); `factored` is K-FAC's π-damping
 * (Martens & Grosse 2015, §6.3), kfac only; `cg` is conjugate gradients on
 * `mv`, for every structure.
 */
export type SolveMethod = 'exact' | 'factored' | 'cg';
export const SOLVE_METHODS: readonly SolveMethod[] = ['exact', 'factored', 'cg'];

export interface SolveOptions {
  /** δ ≥ 0 of (F + δI) x = g (default 0). */
  damping?: number;
  /** Default 'exact'. */
  method?: SolveMethod;
  /** cg: relative residual to reach (default 1e-6). */
  tolerance?: number;
  /** cg: most iterations (default 10·P, at most 10,000). */
  maxIterations?: number;
  /**
   * exact, on block and full: where F + δI is not positive definite in
   * float64, retry at 10× the damping (from 1e-10·tr F / P) until it is,
   * and say so in the report (default true); false: a clear error instead.
   */
  retry?: boolean;
}

export interface SolveReport {
  x: Float64Array;
  method: SolveMethod;
  /** The damping asked for. */
  requestedDamping: number;
  /** The damping the answer is for: larger than asked after retries. */
  damping: number;
  retries: number;
  /** cg: iterations, the true relative residual, and whether it reached the tolerance. */
  iterations?: number;
  relativeResidual?: number;
  converged: boolean;
}

export interface EigOptions {
  /** Eigenpairs wanted (default 10, at most P). */
  k?: number;
  /** Lanczos: relative residual of a converged pair (default 1e-8). */
  tolerance?: number;
  /** Lanczos: most products with F. */
  maxIterations?: number;
}

export interface Eigenpairs {
  /** The top k eigenvalues, descending. */
  values: Float64Array;
  /** [k, P] row-major: row j is the unit eigenvector of values[j]. */
  vectors: Float64Array;
  /** `exact` through the structure's factors, or `lanczos` on mv. */
  method: 'exact' | 'lanczos';
  /** lanczos: products with F, and whether every pair reached the tolerance. */
  iterations?: number;
  converged: boolean;
}

export interface FisherMatrix {
  readonly info: FisherInfo;
  readonly layout: TensorLayout;
  /** P. */
  readonly size: number;
  /** diag(F), [P]. */
  diagonal(): Float64Array;
  /** F v, never forming a dense F where the structure is factored. */
  mv(v: ArrayLike<number>): Float64Array;
  /** vᵀ F v: twice the local KL divergence along v. */
  quadratic(v: ArrayLike<number>): number;
  /** tr F. */
  trace(): number;
  /** ‖F‖_F. */
  frobeniusNorm(): number;
  /** F as a dense P × P row-major array; refused, with the bytes it would take, where it does not fit. */
  toDense(): Float64Array;
  /** x with (F + damping·I) x = g (see SolveOptions). */
  solve(g: ArrayLike<number>, options?: SolveOptions): Float64Array;
  /** The same, with how it was found: the method, the damping used, cg's iterations and residual. */
  solveWithReport(g: ArrayLike<number>, options?: SolveOptions): SolveReport;
  /** The top-k eigenpairs. */
  eig(options?: EigOptions): Eigenpairs;
  /** log det(F + damping·I), exactly. */
  logdet(options?: { damping?: number }): number;
  /** c·F (c ≥ 0), the same structure: online EWC's decay. */
  scale(c: number): FisherMatrix;
  /** F + F' as matrices, where the structure holds the sum exactly (diag, full, block, lowrank); N adds up. */
  add(other: FisherMatrix): FisherMatrix;
  /** The Fisher of the union of the data these were computed on (shards), exactly where the structure allows (DESIGN.md; README). */
  merge(others: readonly FisherMatrix[]): FisherMatrix;
  /** EWC penalty (λ/2) dᵀ F d, d = θ − θ*. */
  ewcPenalty(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): number;
  /** Its gradient in θ: λ F d. */
  ewcGradient(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): Float64Array;
  /** The tensors of the output file (DESIGN.md §4). */
  tensors(dtype?: FileDtype): Map<string, Tensor>;
  /** Writes the safetensors file, atomically. */
  save(path: string, options?: { dtype?: FileDtype }): Promise<void>;
}

/** One dense diagonal block of F (all of F for `full`): what a factorisation outside the Fisher object reads. */
export interface DenseBlock {
  /** The layer's name, or `fisher` for all of F. */
  name: string;
  /** Its first parameter, and its size P_l. */
  offset: number;
  size: number;
  /** Rows [row0, row0 + count) of the block, row-major [count, size]. */
  rows(row0: number, count: number): Float32Array | Float64Array;
}

/** Fishers held as dense diagonal blocks (full, block, and either in a file): F is zero outside them. */
export interface DenseBlocks {
  denseBlocks(): readonly DenseBlock[];
}

export function hasDenseBlocks(f: FisherMatrix): f is FisherMatrix & DenseBlocks {
  return typeof (f as Partial<DenseBlocks>).denseBlocks === 'function';
}

/** The most entries toDense returns: 2^28 (2 GiB of float64, P ≈ 16,000). */
export const MAX_DENSE_RESULT = 2 ** 28;

export function checkLength(v: ArrayLike<number>, p: number, what: string): void {
  if (v.length !== p) throw new RangeError(`${what} has length ${v.length}, expected P = ${p}`);
}

export function cast(values: Float64Array, dtype: FileDtype): Float32Array | Float64Array {
  return dtype === 'F64' ? values : Float32Array.from(values);
}

/** A damping: a finite number ≥ 0. */
export function checkDamping(damping: number | undefined): number {
  const d = damping ?? 0;
  if (!Number.isFinite(d) || d < 0) throw new RangeError(`damping must be a finite number ≥ 0, got ${damping}`);
  return d;
}

function difference(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, p: number): Float64Array {
  checkLength(theta, p, 'θ');
  checkLength(thetaStar, p, 'θ*');
  const d = new Float64Array(p);
  for (let i = 0; i < p; i++) d[i] = theta[i]! - thetaStar[i]!;
  return d;
}

/** The file metadata: strings, as safetensors requires. */
export function fisherMetadata(info: FisherInfo, layout: TensorLayout): Record<string, string> {
  return {
    format: 'fisher-gpu/1',
    kind: info.kind,
    structure: info.structure,
    reduction: info.reduction,
    n: String(info.n),
    samples: String(info.samples),
    seed: info.seed === undefined ? 'none' : String(info.seed),
    backend: info.backend,
    ...(info.kfac === undefined ? {} : { kfac: info.kfac }),
    ...(info.lowrank === undefined ? {} : { rank: String(info.lowrank.rank), passes: String(info.lowrank.passes), converged: String(info.lowrank.converged) }),
    ...(info.shard === undefined ? {} : { shard: `${info.shard.index}/${info.shard.count}`, shard_total_n: String(info.shard.totalN), run: info.shard.run }),
    parameters: JSON.stringify(layout.entries.map((e) => ({ name: e.name, shape: e.shape }))),
    // The blocks of θ the structure works in (its layers, or the blocks a caller gave fromGradients).
    layers: JSON.stringify(layout.layers.map((l) => ({ name: l.name, size: l.size }))),
  };
}

/** Where two Fishers cannot be combined: a different structure, parameters, kind or scaling; else undefined. */
export function combineProblem(a: FisherMatrix, b: FisherMatrix): string | undefined {
  const ia = a.info;
  const ib = b.info;
  if (ia.structure !== ib.structure) return `structures differ: ${ia.structure} and ${ib.structure}`;
  if (a.size !== b.size) return `parameter counts differ: P = ${a.size} and ${b.size}`;
  const ea = a.layout.entries;
  const eb = b.layout.entries;
  for (let i = 0; i < Math.max(ea.length, eb.length); i++) {
    const x = ea[i];
    const y = eb[i];
    if (!x || !y || x.name !== y.name || x.shape.join(',') !== y.shape.join(',')) {
      return `parameters differ at tensor ${i + 1}: ${x ? `${x.name} [${x.shape}]` : 'none'} and ${y ? `${y.name} [${y.shape}]` : 'none'}`;
    }
  }
  if (ia.kind !== ib.kind) return `kinds differ: ${ia.kind} and ${ib.kind}`;
  if (ia.reduction !== ib.reduction) return `reductions differ: ${ia.reduction} and ${ib.reduction}`;
  if (ia.samples !== ib.samples) return `label samples per input differ: M = ${ia.samples} and ${ib.samples}`;
  if (ia.kfac !== ib.kfac) return `K-FAC modes differ: ${ia.kfac} and ${ib.kfac}`;
  return undefined;
}

/** Throws where the Fishers cannot be combined by `what`. */
export function checkCombinable(what: string, first: FisherMatrix, others: readonly FisherMatrix[]): void {
  for (const o of others) {
    const problem = combineProblem(first, o);
    if (problem) throw new RangeError(`cannot ${what} these Fishers: ${problem}`);
  }
}

/** The info of a Fisher over the union of the others' data: N adds up, the shard is gone. */
export function unionInfo(infos: readonly FisherInfo[]): FisherInfo {
  const first = infos[0]!;
  const seeds = new Set(infos.map((i) => i.seed));
  const backends = [...new Set(infos.map((i) => i.backend))];
  const union: FisherInfo = { ...first, n: infos.reduce((s, i) => s + i.n, 0), seed: seeds.size === 1 ? first.seed : undefined, backend: backends.join(' + ') };
  delete union.shard;
  return union;
}

/**
 * The weights that turn Fishers of shards into the Fisher of their union:
 * under `mean` each shard's F is its sum over N_k, so the union's is
 * Σ_k (N_k / N) F_k; under `sum` the sums add.
 */
export function shardWeights(infos: readonly FisherInfo[]): number[] {
  const n = infos.reduce((s, i) => s + i.n, 0);
  return infos.map((i) => (i.reduction === 'mean' ? i.n / n : 1));
}

/** The Fishers a merge combines (checked), the info of their union, and each one's weight (shardWeights). */
export function mergeOf<F extends FisherMatrix>(first: F, others: readonly FisherMatrix[]): { all: F[]; info: FisherInfo; weights: number[] } {
  checkCombinable('merge', first, others);
  const all = [first, ...(others as F[])];
  const infos = all.map((f) => f.info);
  return { all, info: unionInfo(infos), weights: shardWeights(infos) };
}

/** Σ_k w_k x_k over equally long arrays. */
export function weightedSum(arrays: readonly Float64Array[], weights: readonly number[]): Float64Array {
  const out = new Float64Array(arrays[0]!.length);
  arrays.forEach((a, k) => {
    const w = weights[k]!;
    for (let i = 0; i < out.length; i++) out[i]! += w * a[i]!;
  });
  return out;
}

/** A scale for scale(): finite and ≥ 0 (a Fisher stays positive semi-definite). */
export function checkScale(c: number): number {
  if (!Number.isFinite(c) || c < 0) throw new RangeError(`a Fisher scales by a finite number ≥ 0, got ${c}`);
  return c;
}

/**
 * Factorises with `factor(damping)`, retrying at 10× the damping (from
 * `floor`) while the matrix is not positive definite, where `retry` allows.
 */
export function withRetries<T>(factor: (damping: number) => T, damping: number, floor: number, retry: boolean): { value: T; damping: number; retries: number } {
  let d = damping;
  for (let retries = 0; ; retries++) {
    try {
      return { value: factor(d), damping: d, retries };
    } catch (e) {
      if (!(e instanceof NotPositiveDefiniteError) || !retry || retries >= 30) throw e;
      d = Math.max(10 * d, floor);
    }
  }
}

/** Eigenpairs of the k largest of `values`, each eigenvector a unit vector from `vector(index)`. */
export function topOf(values: ArrayLike<number>, k: number, vector: (index: number, out: Float64Array) => void, p: number): Eigenpairs {
  const order = Array.from({ length: values.length }, (_, i) => i).sort((a, b) => values[b]! - values[a]!);
  const top = order.slice(0, k);
  const vectors = new Float64Array(k * p);
  top.forEach((index, j) => vector(index, vectors.subarray(j * p, (j + 1) * p)));
  return { values: Float64Array.from(top, (i) => values[i]!), vectors, method: 'exact', converged: true };
}

/** What every structure's Fisher shares: products and solves through mv where nothing better exists, the EWC penalty, saving. */
export abstract class BaseFisher implements FisherMatrix {
  constructor(
    readonly info: FisherInfo,
    readonly layout: TensorLayout,
  ) {}

  get size(): number {
    return this.layout.total;
  }

  abstract diagonal(): Float64Array;
  abstract mv(v: ArrayLike<number>): Float64Array;
  abstract frobeniusNorm(): number;
  abstract logdet(options?: { damping?: number }): number;
  abstract scale(c: number): FisherMatrix;
  abstract tensors(dtype?: FileDtype): Map<string, Tensor>;
  /** The structure's direct solve at `damping` (SolveMethod 'exact'). */
  protected abstract exactSolve(g: ArrayLike<number>, damping: number, retry: boolean): { x: Float64Array; damping: number; retries: number };

  /** The structure's top-k eigenpairs through its factors, or undefined: Lanczos on mv. */
  protected exactEig(_k: number): Eigenpairs | undefined {
    return undefined;
  }

  /** K-FAC's π-damped solve; other structures have no factors to damp. */
  protected factoredSolve(_g: ArrayLike<number>, _damping: number): Float64Array {
    throw new RangeError(`solve method "factored" is K-FAC's π-damping of its factors; a ${this.info.structure} Fisher has none (use "exact" or "cg")`);
  }

  quadratic(v: ArrayLike<number>): number {
    return dot(v, this.mv(v));
  }

  trace(): number {
    return this.diagonal().reduce((a, b) => a + b, 0);
  }

  /** F column by column, F e_j; structures with a cheaper form override it. */
  toDense(): Float64Array {
    const p = this.size;
    this.checkDenseFits();
    const out = new Float64Array(p * p);
    const e = new Float64Array(p);
    for (let j = 0; j < p; j++) {
      e[j] = 1;
      const column = this.mv(e);
      e[j] = 0;
      for (let i = 0; i < p; i++) out[i * p + j] = column[i]!;
    }
    return out;
  }

  protected checkDenseFits(): void {
    const p = this.size;
    if (p * p > MAX_DENSE_RESULT) {
      throw new RangeError(`a dense P × P matrix of P = ${p} takes ${((8 * p * p) / 2 ** 30).toFixed(1)} GiB as float64, more than the ${(8 * MAX_DENSE_RESULT) / 2 ** 30} GiB toDense returns; use mv, diagonal or eig instead`);
    }
  }

  solve(g: ArrayLike<number>, options: SolveOptions = {}): Float64Array {
    return this.solveWithReport(g, options).x;
  }

  solveWithReport(g: ArrayLike<number>, options: SolveOptions = {}): SolveReport {
    checkLength(g, this.size, 'g');
    const damping = checkDamping(options.damping);
    const method = options.method ?? 'exact';
    switch (method) {
      case 'exact': {
        const r = this.exactSolve(g, damping, options.retry ?? true);
        return { x: r.x, method, requestedDamping: damping, damping: r.damping, retries: r.retries, converged: true };
      }
      case 'factored':
        return { x: this.factoredSolve(g, damping), method, requestedDamping: damping, damping, retries: 0, converged: true };
      case 'cg': {
        const r = conjugateGradients((v) => this.mv(v), g, { damping, ...(options.tolerance === undefined ? {} : { tolerance: options.tolerance }), ...(options.maxIterations === undefined ? {} : { maxIterations: options.maxIterations }) });
        return { x: r.x, method, requestedDamping: damping, damping, retries: 0, iterations: r.iterations, relativeResidual: r.relativeResidual, converged: r.converged };
      }
      default:
        throw new RangeError(`unknown solve method "${String(method)}": one of ${SOLVE_METHODS.join(', ')}`);
    }
  }

  eig(options: EigOptions = {}): Eigenpairs {
    const k = options.k ?? Math.min(10, this.size);
    if (!Number.isInteger(k) || k < 1 || k > this.size) throw new RangeError(`k must be a whole number from 1 to P = ${this.size}, got ${options.k}`);
    const exact = this.exactEig(k);
    if (exact) return exact;
    const r = lanczosTop((v) => this.mv(v), this.size, k, {
      ...(options.tolerance === undefined ? {} : { tolerance: options.tolerance }),
      ...(options.maxIterations === undefined ? {} : { maxIterations: options.maxIterations }),
    });
    return { values: r.values, vectors: r.vectors, method: 'lanczos', iterations: r.iterations, converged: r.converged };
  }

  add(_other: FisherMatrix): FisherMatrix {
    throw new RangeError(`a sum of two ${this.info.structure} Fishers is not a ${this.info.structure} Fisher; merge() combines Fishers of shards of one data set, and EWC over several tasks keeps one Fisher per task`);
  }

  merge(_others: readonly FisherMatrix[]): FisherMatrix {
    throw new RangeError(`${this.info.structure} Fishers of shards do not merge into the Fisher of their union`);
  }

  ewcPenalty(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): number {
    return 0.5 * lambda * this.quadratic(difference(theta, thetaStar, this.size));
  }

  ewcGradient(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): Float64Array {
    return this.mv(difference(theta, thetaStar, this.size)).map((x) => lambda * x);
  }

  async save(path: string, options: { dtype?: FileDtype } = {}): Promise<void> {
    await writeSafetensors(path, this.tensors(options.dtype ?? 'F32'), fisherMetadata(this.info, this.layout));
  }
}
