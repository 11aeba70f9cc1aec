/**
 * `full`: F = c Σ_{n,v} g_{n,v} g_{n,v}ᵀ, from the engine's Gram tiles.
 *
 * In memory where it fits the host (and its budget). Beyond that, with a
 * file to spill to, it is computed in row tiles, one pass over the data per
 * tile: each pass sums the upper triangle of rows [r0, r0 + R) in float64,
 * fills the tile's lower part from the rows already written (F is
 * symmetric), and writes the tile straight into the safetensors file, whose
 * header is known in advance; P is then bounded by the disk, not by RAM.
 */
import { SafetensorsStream } from '../../io/safetensors-stream.js';
import { InputError } from '../../layers/errors.js';
import type { ParameterLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import type { ResolvedOptions } from '../options.js';
import { BaseFisher, DenseFisher, fisherMetadata, type FileDtype, type FisherInfo } from '../result.js';
import type { Tensor } from '../../io/dtypes.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';
import { copyFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/** The largest dense Fisher accumulated on the host: 2^28 entries (4 GiB as two float64 arrays, P ≈ 16,000). */
export const MAX_DENSE_ENTRIES = 2 ** 28;
/** Host bytes per entry of F held in memory: the compensated sum (two float64) and the result. */
const BYTES_PER_ENTRY = 3 * 8;

/** Rows per tile when F is written to disk as it is computed, or undefined when it is held in memory. */
function spillRows(p: number, o: ResolvedOptions): number | undefined {
  const host = o.memoryBudget.host;
  const inMemory = p * p <= MAX_DENSE_ENTRIES && (host === undefined || BYTES_PER_ENTRY * p * p <= host);
  if (inMemory || o.spill === undefined) return undefined;
  return Math.max(1, Math.min(p, Math.floor(Math.min(host ?? Infinity, BYTES_PER_ENTRY * MAX_DENSE_ENTRIES) / (BYTES_PER_ENTRY * p))));
}

/**
 * A full Fisher written to a safetensors file (`fisher` [P, P], float32),
 * too large to hold: its diagonal and trace are kept, the rest is read from
 * the file (in Python: safetensors' safe_open reads slices of it).
 */
export class StoredDenseFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
    /** The file holding F. */
    readonly path: string,
    readonly values: { diagonal: Float64Array },
  ) {
    super(info, layout);
  }

  diagonal(): Float64Array {
    return this.values.diagonal.slice();
  }

  mv(): Float64Array {
    throw new RangeError(`the full Fisher of P = ${this.size} lives in ${this.path}, not in memory: read it by slices (its diagonal and trace are here)`);
  }

  solve(): Float64Array {
    throw new RangeError(`the full Fisher of P = ${this.size} lives in ${this.path}: a dense solve of it does not fit in memory; use structure "kfac", "ekfac" or "lowrank"`);
  }

  tensors(): Map<string, Tensor> {
    throw new RangeError(`the full Fisher of P = ${this.size} lives in ${this.path}, not in memory`);
  }

  /** Copies the file (nothing to do where it is already). */
  override async save(path: string, options: { dtype?: FileDtype } = {}): Promise<void> {
    if ((options.dtype ?? 'F32') !== 'F32') throw new RangeError('a full Fisher written tile by tile is float32');
    if (resolve(path) !== resolve(this.path)) await copyFile(this.path, path);
  }
}

export const full: StructureType = {
  name: 'full',
  engineWork: ['full'],
  hostBytes: (model, o) => BYTES_PER_ENTRY * model.parameterCount * (spillRows(model.parameterCount, o) ?? model.parameterCount),
  start(model, o, info) {
    const p = model.parameterCount;
    const rows = spillRows(p, o);
    if (rows === undefined && p * p > MAX_DENSE_ENTRIES) {
      throw new InputError(
        `the full Fisher of P = ${p} parameters has ${(p * p).toExponential(2)} entries (${((16 * p * p) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} held in memory; give an output file to write it to tile by tile, or use structure "diag", "block" or "kfac"`,
      );
    }
    if (rows === undefined) {
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
    }
    // Row tiles, one pass each, straight to the file.
    const path = o.spill!;
    const diagonal = new Float64Array(p);
    let r0 = 0;
    let acc = new CompensatedSum(Math.min(rows, p) * p);
    let stream: SafetensorsStream | undefined;
    return {
      async add(loaded, batch, labels) {
        const count = Math.min(rows, p - r0);
        await loaded.gramSum(batch, (t) => acc.add(t.values, (t.row0 - r0) * p), labels, [{ offset: 0, size: p, rows: { start: r0, count } }]);
      },
      async nextPass() {
        const count = Math.min(rows, p - r0);
        stream ??= await SafetensorsStream.create(path, [['fisher', { dtype: 'F32', shape: [p, p] }]], fisherMetadata(info, model.layout));
        try {
          const sums = acc.result(kindScale(info));
          const tile = new Float32Array(count * p);
          for (let r = 0; r < count; r++) {
            // The upper triangle from this pass; within the tile, the lower part by symmetry.
            for (let c = r0 + r; c < p; c++) tile[r * p + c] = sums[r * p + c]!;
            for (let c = r0; c < r0 + r; c++) tile[r * p + c] = sums[(c - r0) * p + r0 + r]!;
            diagonal[r0 + r] = sums[r * p + r0 + r]!;
          }
          // Columns before the tile: row c < r0 was written with F[c, r0 : r0 + count].
          for (let c = 0; c < r0; c++) {
            const col = await stream.read('fisher', c * p + r0, count);
            for (let r = 0; r < count; r++) tile[r * p + c] = col[r]!;
          }
          await stream.write('fisher', tile, r0 * p);
        } catch (e) {
          await stream.abort();
          stream = undefined;
          throw e;
        }
        r0 += count;
        acc = new CompensatedSum(Math.min(rows, p - r0) * p);
        return r0 < p;
      },
      async result(info) {
        await stream!.finish();
        return new StoredDenseFisher(info, model.layout, path, { diagonal });
      },
      async abort() {
        await stream?.abort();
      },
    };
  },
};
