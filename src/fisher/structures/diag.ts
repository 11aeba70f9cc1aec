/** `diag`: F_ii = c Σ_{n,v} g_{n,v,i}², from the engine's squared-gradient sums. */
import type { Tensor } from '../../io/dtypes.js';
import { dot } from '../../linalg/orthonormal.js';
import type { TensorLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import {
  BaseFisher,
  cast,
  checkCombinable,
  checkLength,
  checkScale,
  checkDamping,
  mergeOf,
  topOf,
  unionInfo,
  weightedSum,
  type Eigenpairs,
  type FileDtype,
  type FisherInfo,
  type FisherMatrix,
} from '../result.js';
import type { SquaredGradientTotal } from '../../engine/engine.js';
import { kindScale, type StructureType } from './structure.js';

/** (value + damping)⁻¹ g for one parameter; a clear error where that is not positive. */
export function dampedInverse(value: number, damping: number, where: string): number {
  const d = value + damping;
  if (!(d > 0)) throw new RangeError(`F + damping·I is singular at ${where} (value ${d}); pass a positive damping`);
  return 1 / d;
}

/** diag(F) only; off-diagonal entries are taken as 0 by every operation. */
export class DiagonalFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: TensorLayout,
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

  frobeniusNorm(): number {
    return Math.sqrt(dot(this.values, this.values));
  }

  override toDense(): Float64Array {
    this.checkDenseFits();
    const p = this.size;
    const out = new Float64Array(p * p);
    for (let i = 0; i < p; i++) out[i * p + i] = this.values[i]!;
    return out;
  }

  /** Elementwise. */
  protected exactSolve(g: ArrayLike<number>, damping: number): { x: Float64Array; damping: number; retries: number } {
    return { x: this.values.map((f, i) => g[i]! * dampedInverse(f, damping, `parameter ${i}`)), damping, retries: 0 };
  }

  protected override exactEig(k: number): Eigenpairs {
    return topOf(this.values, k, (i, out) => (out[i] = 1), this.size);
  }

  logdet(options: { damping?: number } = {}): number {
    const damping = checkDamping(options.damping);
    let s = 0;
    this.values.forEach((f, i) => (s -= Math.log(dampedInverse(f, damping, `parameter ${i}`))));
    return s;
  }

  scale(c: number): DiagonalFisher {
    checkScale(c);
    return new DiagonalFisher(this.info, this.layout, this.values.map((x) => c * x));
  }

  override add(other: FisherMatrix): DiagonalFisher {
    checkCombinable('add', this, [other]);
    const o = other as DiagonalFisher;
    return new DiagonalFisher(unionInfo([this.info, o.info]), this.layout, weightedSum([this.values, o.values], [1, 1]));
  }

  override merge(others: readonly FisherMatrix[]): DiagonalFisher {
    const { all, info, weights } = mergeOf(this, others);
    return new DiagonalFisher(info, this.layout, weightedSum(all.map((f) => f.values), weights));
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

export const diag: StructureType = {
  name: 'diag',
  engineWork: ['diag'],
  // The compensated sum (two arrays) and the result.
  hostBytes: (model) => 3 * 8 * model.parameterCount,
  start(model) {
    // Where the engine keeps a running total (the GPU's, summed on the device with compensation), the batches go
    // there and it is read once, scaled as read: it is the whole sum, so no host sum is made. Otherwise the host
    // sums the batches' partials.
    let total: SquaredGradientTotal | undefined;
    let acc: CompensatedSum | undefined;
    return {
      async add(loaded, batch, labels) {
        if (loaded.squaredGradientTotal) {
          total ??= loaded.squaredGradientTotal();
          await total.add(batch, labels);
        } else {
          (acc ??= new CompensatedSum(model.parameterCount)).add(await loaded.squaredGradientSum(batch, labels));
        }
      },
      async result(info) {
        const scale = kindScale(info);
        if (total) {
          const values = await total.read(scale);
          total.release();
          total = undefined;
          return new DiagonalFisher(info, model.layout, values);
        }
        return new DiagonalFisher(info, model.layout, (acc ?? new CompensatedSum(model.parameterCount)).result(scale));
      },
      async abort() {
        total?.release();
        total = undefined;
      },
    };
  },
  load: async (file) => new DiagonalFisher(file.info, file.layout, await file.parameterValues()),
};
