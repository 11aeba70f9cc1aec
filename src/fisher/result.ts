/**
 * Fisher matrices as objects with their operations. Values are float64 (the
 * estimator's compensated sums); files hold float32 unless asked otherwise.
 * Vectors are flat, in the parameter order of src/model/layout.ts.
 */
import type { Tensor } from '../io/dtypes.js';
import { writeSafetensors } from '../io/safetensors.js';
import { choleskySolve, matVec } from '../linalg/cholesky.js';
import type { ParameterLayout } from '../model/layout.js';
import type { FisherKind, FisherStructure, KfacMode, Reduction } from './options.js';

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
}

export type FileDtype = 'F32' | 'F64';

export interface FisherMatrix {
  readonly info: FisherInfo;
  readonly layout: ParameterLayout;
  /** P. */
  readonly size: number;
  /** diag(F), [P]. */
  diagonal(): Float64Array;
  /** F v. */
  mv(v: ArrayLike<number>): Float64Array;
  /** tr F. */
  trace(): number;
  /** x with (F + damping·I) x = g. */
  solve(g: ArrayLike<number>, options?: { damping?: number }): Float64Array;
  /** EWC penalty (λ/2) dᵀ F d, d = θ − θ*: Σ_i F_ii d_i² for a diagonal F. */
  ewcPenalty(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): number;
  /** Its gradient in θ: λ F d. */
  ewcGradient(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): Float64Array;
  /** The tensors of the output file (DESIGN.md §4). */
  tensors(dtype?: FileDtype): Map<string, Tensor>;
  /** Writes the safetensors file, atomically. */
  save(path: string, options?: { dtype?: FileDtype }): Promise<void>;
}

export function checkLength(v: ArrayLike<number>, p: number, what: string): void {
  if (v.length !== p) throw new RangeError(`${what} has length ${v.length}, expected P = ${p}`);
}

export function cast(values: Float64Array, dtype: FileDtype): Float32Array | Float64Array {
  return dtype === 'F64' ? values : Float32Array.from(values);
}

function difference(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, p: number): Float64Array {
  checkLength(theta, p, 'θ');
  checkLength(thetaStar, p, 'θ*');
  return Float64Array.from({ length: p }, (_, i) => theta[i]! - thetaStar[i]!);
}

/** The file metadata: strings, as safetensors requires. */
export function fisherMetadata(info: FisherInfo, layout: ParameterLayout): Record<string, string> {
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
    parameters: JSON.stringify(layout.entries.map((e) => ({ name: e.name, shape: e.shape }))),
  };
}

/** What every structure's Fisher shares: the EWC penalty from mv, the trace from the diagonal, saving. */
export abstract class BaseFisher implements FisherMatrix {
  constructor(
    readonly info: FisherInfo,
    readonly layout: ParameterLayout,
  ) {}

  get size(): number {
    return this.layout.total;
  }

  abstract diagonal(): Float64Array;
  abstract mv(v: ArrayLike<number>): Float64Array;
  abstract solve(g: ArrayLike<number>, options?: { damping?: number }): Float64Array;
  abstract tensors(dtype?: FileDtype): Map<string, Tensor>;

  trace(): number {
    return this.diagonal().reduce((a, b) => a + b, 0);
  }

  ewcPenalty(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): number {
    const d = difference(theta, thetaStar, this.size);
    const fd = this.mv(d);
    let s = 0;
    for (let i = 0; i < d.length; i++) s += d[i]! * fd[i]!;
    return 0.5 * lambda * s;
  }

  ewcGradient(theta: ArrayLike<number>, thetaStar: ArrayLike<number>, lambda: number): Float64Array {
    return this.mv(difference(theta, thetaStar, this.size)).map((x) => lambda * x);
  }

  async save(path: string, options: { dtype?: FileDtype } = {}): Promise<void> {
    await writeSafetensors(path, this.tensors(options.dtype ?? 'F32'), fisherMetadata(this.info, this.layout));
  }
}

/** diag(F) only; off-diagonal entries are taken as 0 by mv and solve. */
export class DiagonalFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
    readonly values: Float64Array,
  ) {
    super(info, layout);
    checkLength(values, layout.total, 'diagonal');
  }

  diagonal(): Float64Array {
    return this.values.slice();
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    return this.values.map((f, i) => f * v[i]!);
  }

  solve(g: ArrayLike<number>, options: { damping?: number } = {}): Float64Array {
    checkLength(g, this.size, 'g');
    const damping = options.damping ?? 0;
    return this.values.map((f, i) => {
      const d = f + damping;
      if (!(d > 0)) throw new RangeError(`F + damping·I is singular at parameter ${i} (value ${d}); pass a positive damping`);
      return g[i]! / d;
    });
  }

  /** One tensor per parameter, named and shaped as the parameter. */
  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const e of this.layout.entries) {
      out.set(e.name, { dtype, shape: e.shape, data: cast(this.values.subarray(e.offset, e.offset + e.size), dtype) });
    }
    return out;
  }
}

/** All of F, P × P row-major. */
export class DenseFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
    readonly values: Float64Array,
  ) {
    super(info, layout);
    checkLength(values, layout.total * layout.total, 'dense Fisher');
  }

  diagonal(): Float64Array {
    const p = this.size;
    return Float64Array.from({ length: p }, (_, i) => this.values[i * p + i]!);
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    return matVec(this.values, this.size, this.size, v);
  }

  /** Cholesky factorisation of F + damping·I, then two triangular solves. */
  solve(g: ArrayLike<number>, options: { damping?: number } = {}): Float64Array {
    checkLength(g, this.size, 'g');
    return choleskySolve(this.values, this.size, g, options.damping ?? 0);
  }

  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map([['fisher', { dtype, shape: [this.size, this.size], data: cast(this.values, dtype) }]]);
  }
}
