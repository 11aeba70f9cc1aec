/** `full`: F = c Σ_{n,v} g_{n,v} g_{n,v}ᵀ, from the engine's Gram tiles, held on the host. */
import { InputError } from '../../layers/errors.js';
import { CompensatedSum } from '../accumulator.js';
import { DenseFisher } from '../result.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';

/** The largest dense Fisher accumulated on the host: 2^28 entries (4 GiB as two float64 arrays, P ≈ 16,000). */
export const MAX_DENSE_ENTRIES = 2 ** 28;

export const full: StructureType = {
  name: 'full',
  engineWork: ['full'],
  hostBytes: (model) => 3 * 8 * model.parameterCount ** 2,
  start(model) {
    const p = model.parameterCount;
    if (p * p > MAX_DENSE_ENTRIES) {
      throw new InputError(
        `the full Fisher of P = ${p} parameters has ${(p * p).toExponential(2)} entries (${((16 * p * p) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} supported; use structure "diag", "block" or "kfac"`,
      );
    }
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
