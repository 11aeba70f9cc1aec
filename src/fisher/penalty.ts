/**
 * EWC penalties from Fisher objects, for training on the device (train()'s
 * `penalty`), so a training loop never copies θ to the host:
 *
 *   Σ_t (λ w_t / 2) (θ − θ*_t)ᵀ F_t (θ − θ*_t)      gradient λ Σ_t w_t F_t (θ − θ*_t)
 *
 * A diagonal Fisher (and a K-FAC's unfactored layers) adds to the
 * elementwise scale and center; a K-FAC layer adds a term λ w G D A (D the
 * layer's θ − θ* as its [W | b]); a full Fisher a term λ w F (θ − θ*).
 *
 * Online EWC (Schwarz et al. 2018): one anchor, the latest task's θ*, with
 * the running Fisher F̃ ← γ F̃ + F_t, kept as its terms γ^(T−t) F_t: exact
 * for every structure (a sum of K-FACs is not a K-FAC, but a sum of their
 * penalty terms is what the device adds).
 */
import type { DensePenalty, KroneckerPenalty, PenaltyGradient } from '../engine/optimizer.js';
import { InputError } from '../layers/errors.js';
import type { FisherMatrix } from './result.js';
import { DiagonalFisher } from './structures/diag.js';
import { DenseFisher } from './structures/full.js';
import { KfacFisher } from './structures/kfac.js';

/** A task's anchor: θ*_t, its Fisher, and a weight w_t (default 1). */
export interface EwcAnchor {
  theta: ArrayLike<number>;
  fisher: FisherMatrix;
  weight?: number;
}

/** The device penalty of Σ_t (λ w_t / 2)(θ − θ*_t)ᵀ F_t (θ − θ*_t), for diag, kfac and full Fishers. */
export function ewcPenaltyGradient(anchors: readonly EwcAnchor[], lambda: number): PenaltyGradient {
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new InputError(`penalty strength λ must be a non-negative number, got ${lambda}`);
  if (anchors.length === 0) throw new InputError('an EWC penalty needs at least one anchor (θ* and its Fisher); train without a penalty before the first task');
  const p = anchors[0]!.fisher.size;
  const scale = new Float64Array(p);
  const center = new Float64Array(p);
  const kronecker: KroneckerPenalty[] = [];
  const dense: DensePenalty[] = [];
  const diagonal = (values: ArrayLike<number>, theta: ArrayLike<number>, w: number, offset: number) => {
    for (let i = 0; i < values.length; i++) {
      scale[offset + i]! += w * values[i]!;
      center[offset + i]! += w * values[i]! * theta[offset + i]!;
    }
  };
  for (const { theta, fisher: F, weight = 1 } of anchors) {
    if (F.size !== p || theta.length !== p) throw new InputError(`every anchor needs θ* and a Fisher of P = ${p}; got P = ${theta.length} and ${F.size}`);
    const w = lambda * weight;
    if (F instanceof DiagonalFisher) diagonal(F.values, theta, w, 0);
    else if (F instanceof DenseFisher) dense.push({ weight: w, matrix: Float32Array.from(F.values), center: Float32Array.from(theta) });
    else if (F instanceof KfacFisher) {
      for (const f of F.factors) {
        if (f.kind === 'diagonal') {
          diagonal(f.values, theta, w, f.slice.offset);
          continue;
        }
        const { inputs, outputs, bias } = f.geometry;
        const slice = Array.prototype.slice.call(theta, f.slice.offset, f.slice.offset + f.slice.size) as number[];
        kronecker.push({ offset: f.slice.offset, inputs, outputs, bias, weight: w, a: Float32Array.from(f.a), g: Float32Array.from(f.g), center: Float32Array.from(slice) });
      }
    } else {
      throw new InputError(`a device EWC penalty is built from diag, kfac and full Fishers; a ${F.info.structure} Fisher's penalty is F.ewcPenalty and F.ewcGradient on the host`);
    }
  }
  return { scale: Float32Array.from(scale), center: Float32Array.from(center), ...(kronecker.length ? { kronecker } : {}), ...(dense.length ? { dense } : {}) };
}

/** The penalty's value at θ: Σ_t (λ w_t / 2)(θ − θ*_t)ᵀ F_t (θ − θ*_t), through each Fisher's mv. */
export function ewcPenaltyValue(anchors: readonly EwcAnchor[], lambda: number, theta: ArrayLike<number>): number {
  return anchors.reduce((s, a) => s + (a.weight ?? 1) * a.fisher.ewcPenalty(theta, a.theta, lambda), 0);
}

/** Online EWC: the latest θ* and the running Fisher γ F̃ + F_t, as weighted terms. */
export class OnlineEwc {
  #terms: { fisher: FisherMatrix; weight: number }[] = [];
  #center: ArrayLike<number> | undefined;

  /** γ ∈ [0, 1]: 1 keeps every task's Fisher in full, 0 only the latest's. */
  constructor(readonly gamma: number) {
    if (!(gamma >= 0 && gamma <= 1)) throw new InputError(`the online decay γ must be in [0, 1], got ${gamma}`);
  }

  /** After a task: F̃ ← γ F̃ + F, θ* ← θ. */
  add(theta: ArrayLike<number>, fisher: FisherMatrix): void {
    this.#terms = this.#terms.map((t) => ({ ...t, weight: t.weight * this.gamma })).filter((t) => t.weight > 0);
    this.#terms.push({ fisher, weight: 1 });
    this.#center = theta;
  }

  /** The anchors of the penalty: every term of F̃ at the latest θ*. */
  anchors(): EwcAnchor[] {
    const center = this.#center;
    return center ? this.#terms.map((t) => ({ theta: center, fisher: t.fisher, weight: t.weight })) : [];
  }
}
