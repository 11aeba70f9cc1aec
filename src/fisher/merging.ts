/**
 * Fisher-weighted model merging (Matena & Raffel 2022): each parameter the
 * average of the models' values weighted by their Fishers' diagonals,
 *
 *   θ_i = Σ_k F_k,ii θ_k,i / Σ_k F_k,ii,
 *
 * computed as Σ_k w_k θ_k,i with w_k = F_k,ii / Σ_k F_k,ii, so a parameter
 * only one model's Fisher weighs comes from that model exactly. Where the
 * Fishers' total is at most `floor` (no model's data informs the
 * parameter) the plain mean is taken instead: no division by zero.
 */
import { InputError } from '../layers/errors.js';
import type { FisherMatrix } from './result.js';

export interface MergeModelsOptions {
  /** Totals Σ_k F_k,ii at or below this take the plain mean (default 0: only where every Fisher is 0 there). */
  floor?: number;
}

/** θ of the merged model, from each model's θ_k and its Fisher (the diagonal of any structure). */
export function fisherWeightedMerge(thetas: readonly ArrayLike<number>[], fishers: readonly FisherMatrix[], options: MergeModelsOptions = {}): { theta: Float64Array; floored: number } {
  if (thetas.length === 0 || thetas.length !== fishers.length) throw new InputError(`merging needs one Fisher per model: ${thetas.length} models, ${fishers.length} Fishers`);
  const floor = options.floor ?? 0;
  if (!(floor >= 0) || !Number.isFinite(floor)) throw new InputError(`the floor must be a finite number ≥ 0, got ${floor}`);
  const p = fishers[0]!.size;
  fishers.forEach((f, k) => {
    if (f.size !== p || thetas[k]!.length !== p) throw new InputError(`model ${k + 1}: P = ${thetas[k]!.length} with a Fisher of P = ${f.size}, expected ${p}`);
  });
  const diagonals = fishers.map((f) => f.diagonal());
  const theta = new Float64Array(p);
  let floored = 0;
  for (let i = 0; i < p; i++) {
    let total = 0;
    for (const d of diagonals) total += d[i]!;
    if (!(total > floor)) {
      floored++;
      for (const t of thetas) theta[i]! += t[i]! / thetas.length;
      continue;
    }
    for (let k = 0; k < thetas.length; k++) theta[i]! += (diagonals[k]![i]! / total) * thetas[k]![i]!;
  }
  return { theta, floored };
}
