/**
 * `full`: F = c Σ_{n,v} g_{n,v} g_{n,v}ᵀ, from the engine's Gram tiles. In
 * memory where it fits the host (and its budget); beyond that, with a file
 * to write to, tile by tile of rows straight into it (spill.ts), so P is
 * bounded by the disk.
 */
import type { Tensor } from '../../io/dtypes.js';
import { InputError } from '../../layers/errors.js';
import { choleskyFactor, choleskyLogdet, choleskySolveFactored, matVec } from '../../linalg/cholesky.js';
import { dot } from '../../linalg/orthonormal.js';
import type { TensorLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import type { ResolvedOptions } from '../options.js';
import {
  BaseFisher,
  cast,
  checkCombinable,
  checkDamping,
  checkLength,
  checkScale,
  type DenseBlock,
  type DenseBlocks,
  mergeOf,
  unionInfo,
  weightedSum,
  withRetries,
  type FileDtype,
  type FisherInfo,
  type FisherMatrix,
} from '../result.js';
import { BYTES_PER_ENTRY, spillBytes, spillHostBytes, spillNote, spillRun, StoredFisher, type SpilledBlock } from './spill.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';

/** The largest dense Fisher accumulated on the host: 2^28 entries (4 GiB as two float64 arrays, P ≈ 16,000). */
export const MAX_DENSE_ENTRIES = 2 ** 28;

/**
 * Floats of F the host may hold at once where a result of `entries` floats
 * goes to disk, or undefined where it is held in memory (it fits, or there
 * is no file to write to).
 */
export function spillEntries(entries: number, o: ResolvedOptions): number | undefined {
  const host = o.memoryBudget.host;
  const inMemory = entries <= MAX_DENSE_ENTRIES && (host === undefined || BYTES_PER_ENTRY * entries <= host);
  if (inMemory || o.spill === undefined) return undefined;
  return Math.floor(Math.min(host ?? Infinity, BYTES_PER_ENTRY * MAX_DENSE_ENTRIES) / BYTES_PER_ENTRY);
}

/** The smallest damping a retried Cholesky starts from: 1e-10 of the mean eigenvalue (tr F / P), or 1e-12 where F is 0. */
export function retryFloor(trace: number, p: number): number {
  return Math.max(1e-10 * (trace / p), 1e-12);
}

/** All of F, P × P row-major. */
export class DenseFisher extends BaseFisher implements DenseBlocks {
  constructor(
    info: FisherInfo,
    layout: TensorLayout,
    readonly values: Float64Array,
  ) {
    super(info, layout);
    checkLength(values, layout.total * layout.total, 'dense Fisher');
  }

  diagonal(): Float64Array {
    const p = this.size;
    const d = new Float64Array(p);
    for (let i = 0; i < p; i++) d[i] = this.values[i * p + i]!;
    return d;
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    return matVec(this.values, this.size, this.size, v);
  }

  frobeniusNorm(): number {
    return Math.sqrt(dot(this.values, this.values));
  }

  override toDense(): Float64Array {
    return this.values.slice();
  }

  denseBlocks(): DenseBlock[] {
    const p = this.size;
    return [{ name: 'fisher', offset: 0, size: p, rows: (row0, count) => this.values.subarray(row0 * p, (row0 + count) * p) }];
  }

  /** Cholesky factorisation of F + damping·I (retried at larger damping where it is not positive definite), then two triangular solves. */
  protected exactSolve(g: ArrayLike<number>, damping: number, retry: boolean): { x: Float64Array; damping: number; retries: number } {
    const p = this.size;
    const r = withRetries((d) => choleskyFactor(this.values, p, d), damping, retryFloor(this.trace(), p), retry);
    return { x: choleskySolveFactored(r.value, p, g), damping: r.damping, retries: r.retries };
  }

  logdet(options: { damping?: number } = {}): number {
    return choleskyLogdet(choleskyFactor(this.values, this.size, checkDamping(options.damping)), this.size);
  }

  scale(c: number): DenseFisher {
    checkScale(c);
    return new DenseFisher(this.info, this.layout, this.values.map((x) => c * x));
  }

  override add(other: FisherMatrix): DenseFisher {
    checkCombinable('add', this, [other]);
    return new DenseFisher(unionInfo([this.info, other.info]), this.layout, weightedSum([this.values, (other as DenseFisher).values], [1, 1]));
  }

  override merge(others: readonly FisherMatrix[]): DenseFisher {
    const { all, info, weights } = mergeOf(this, others);
    return new DenseFisher(info, this.layout, weightedSum(all.map((f) => f.values), weights));
  }

  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map([['fisher', { dtype, shape: [this.size, this.size], data: cast(this.values, dtype) }]]);
  }
}

const whole = (p: number): SpilledBlock[] => [{ tensor: 'fisher', offset: 0, size: p }];

export const full: StructureType = {
  name: 'full',
  engineWork: ['full'],
  hostBytes: (model, o) => {
    const p = model.parameterCount;
    const entries = spillEntries(p * p, o);
    return entries === undefined ? BYTES_PER_ENTRY * p * p : spillHostBytes(whole(p), entries);
  },
  diskBytes: (model, o) => (spillEntries(model.parameterCount ** 2, o) === undefined ? 0 : spillBytes(whole(model.parameterCount))),
  note: (model, o) => {
    const entries = spillEntries(model.parameterCount ** 2, o);
    return entries === undefined ? undefined : spillNote(whole(model.parameterCount), entries);
  },
  start(model, o, info) {
    const p = model.parameterCount;
    const entries = spillEntries(p * p, o);
    if (entries === undefined && p * p > MAX_DENSE_ENTRIES) {
      throw new InputError(
        `the full Fisher of P = ${p} parameters has ${(p * p).toExponential(2)} entries (${((16 * p * p) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} held in memory; give a float32 output file to write it to tile by tile, or use structure "diag", "block" or "kfac"`,
      );
    }
    // Tiles of rows, a pass over the data each, straight to the file.
    if (entries !== undefined) return spillRun(model, info, o.spill!, whole(p), entries);
    const acc = new CompensatedSum(p * p);
    return {
      async add(loaded, batch, labels) {
        await loaded.gramSum(batch, (t) => acc.add(t.values, t.row0 * p), labels);
      },
      result(info) {
        const values = acc.result(kindScale(info));
        mirrorUpper(values, p);
        return new DenseFisher(info, model.layout, values);
      },
    };
  },
  async load(file) {
    const p = file.layout.total;
    // Beyond what the host holds, the file itself is the matrix: read a slice at a time.
    if (p * p > MAX_DENSE_ENTRIES) return StoredFisher.open(file, whole(p));
    return new DenseFisher(file.info, file.layout, await file.values('fisher', [p, p]));
  },
};
