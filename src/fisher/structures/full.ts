/**
 * `full`: F = c Σ_{n,v} g_{n,v} g_{n,v}ᵀ, from the engine's Gram tiles. In
 * memory where it fits the host (and its budget); beyond that, with a file
 * to write to, tile by tile of rows straight into it (spill.ts), so P is
 * bounded by the disk.
 */
import { InputError } from '../../layers/errors.js';
import { CompensatedSum } from '../accumulator.js';
import type { ResolvedOptions } from '../options.js';
import { DenseFisher } from '../result.js';
import { BYTES_PER_ENTRY, spillBytes, spillHostBytes, spillNote, spillRun, type SpilledBlock } from './spill.js';
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
};
