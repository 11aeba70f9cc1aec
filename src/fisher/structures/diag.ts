/** `diag`: F_ii = c Σ_{n,v} g_{n,v,i}², from the engine's squared-gradient sums. */
import { CompensatedSum } from '../accumulator.js';
import { DiagonalFisher } from '../result.js';
import { kindScale, type StructureType } from './structure.js';

export const diag: StructureType = {
  name: 'diag',
  engineWork: ['diag'],
  // The compensated sum (two arrays) and the result.
  hostBytes: (model) => 3 * 8 * model.parameterCount,
  start(model) {
    const acc = new CompensatedSum(model.parameterCount);
    return {
      async add(loaded, batch, labels) {
        acc.add(await loaded.squaredGradientSum(batch, labels));
      },
      result: (info) => new DiagonalFisher(info, model.layout, acc.result(kindScale(info))),
    };
  },
};
