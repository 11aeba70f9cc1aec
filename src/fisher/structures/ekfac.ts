/**
 * `ekfac` (George et al. 2018; DESIGN.md §1): per K-FAC layer the
 * eigenvectors Q_A, Q_G of its factors and the corrected eigenvalues
 *
 *   Λ_{ij} = c Σ_{n,v} ((Q_Gᵀ G_{n,v} Q_A)_{ij})²       [out, in+1]
 *
 * G_{n,v} the per-sample gradient of [W | b]; the layer's block is
 * (Q_G ⊗ Q_A) diag(vec Λ) (Q_G ⊗ Q_A)ᵀ, whose diagonal in the Kronecker
 * eigenbasis is the exact one there. Two passes over the data: K-FAC's
 * factors (A once per batch, G per virtual sample), their float64
 * eigendecompositions on the host, then the rotated per-sample gradients
 * squared on the device. Unfactored layers carry their exact diagonal (from
 * the first pass). Output `name.QA`, `name.QG`, `name.eigenvalues`.
 */
import type { KroneckerBasis } from '../../engine/engine.js';
import type { Tensor } from '../../io/dtypes.js';
import { symmetricEigen } from '../../linalg/eigen.js';
import { dot } from '../../linalg/orthonormal.js';
import type { LayerBlock, TensorLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import type { KfacMode } from '../options.js';
import { cast, checkLength, checkScale, type FileDtype, type FisherInfo } from '../result.js';
import { kroneckerGeometry } from '../../layers/registry.js';
import {
  allPairs,
  augmentedInputs,
  diagonalTensors,
  EigenbasisFisher,
  factorShape,
  fromAugmented,
  kfacEntries,
  KfacSums,
  mvDiagonal,
  throughEigenbasis,
  type DiagonalFactor,
  type FactorShape,
  type SpectralLayer,
} from './kfac.js';
import { kindScale, type StructureType } from './structure.js';

/** A factored layer in its Kronecker eigenbasis. */
export interface EigenbasisFactor {
  readonly kind: 'eigenbasis';
  readonly slice: LayerBlock;
  readonly geometry: FactorShape;
  /** [ia, ia], columns the eigenvectors of A. */
  readonly qa: Float64Array;
  /** [out, out], columns the eigenvectors of G. */
  readonly qg: Float64Array;
  /** Λ [out, ia]: the Fisher's diagonal in the eigenbasis. */
  readonly eigenvalues: Float64Array;
}

export type EkfacFactor = EigenbasisFactor | DiagonalFactor;

export class EkfacFisher extends EigenbasisFisher {
  constructor(
    info: FisherInfo,
    layout: TensorLayout,
    /** One per parametrised layer, in layout order. */
    readonly factors: readonly EkfacFactor[],
    readonly mode: KfacMode,
  ) {
    super(info, layout);
    if (factors.length !== layout.layers.length) throw new RangeError(`${factors.length} factors for ${layout.layers.length} parametrised layers`);
    for (const f of factors) {
      if (f.kind === 'diagonal') {
        checkLength(f.values, f.slice.size, `diagonal of ${f.slice.name}`);
        continue;
      }
      const ia = augmentedInputs(f.geometry);
      checkLength(f.qa, ia * ia, `${f.slice.name}.QA`);
      checkLength(f.qg, f.geometry.outputs ** 2, `${f.slice.name}.QG`);
      checkLength(f.eigenvalues, f.geometry.outputs * ia, `${f.slice.name}.eigenvalues`);
    }
  }

  /** diag[o, i] = Σ_{k,l} Q_G[o, k]² Λ[k, l] Q_A[i, l]². */
  diagonal(): Float64Array {
    const out = new Float64Array(this.size);
    for (const f of this.factors) {
      if (f.kind === 'diagonal') {
        out.set(f.values, f.slice.offset);
        continue;
      }
      const { outputs } = f.geometry;
      const ia = augmentedInputs(f.geometry);
      // (Q_G ∘ Q_G) Λ (Q_A ∘ Q_A)ᵀ
      const left = new Float64Array(outputs * ia);
      for (let o = 0; o < outputs; o++) for (let k = 0; k < outputs; k++) {
        const q = f.qg[o * outputs + k]! ** 2;
        for (let l = 0; l < ia; l++) left[o * ia + l]! += q * f.eigenvalues[k * ia + l]!;
      }
      const m = new Float64Array(outputs * ia);
      for (let o = 0; o < outputs; o++) for (let i = 0; i < ia; i++) {
        let s = 0;
        for (let l = 0; l < ia; l++) s += left[o * ia + l]! * f.qa[i * ia + l]! ** 2;
        m[o * ia + i] = s;
      }
      fromAugmented(f.geometry, m, out, f.slice.offset);
    }
    return out;
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    const out = new Float64Array(this.size);
    for (const f of this.factors) {
      if (f.kind === 'diagonal') {
        mvDiagonal(f, v, out);
        continue;
      }
      const ia = augmentedInputs(f.geometry);
      throughEigenbasis(f.geometry, f.qa, f.qg, v, f.slice.offset, (o, i) => f.eigenvalues[o * ia + i]!, out);
    }
    return out;
  }

  /** The eigenbasis diagonalises each layer's block, Λ there: every pair may hold a top eigenvalue. */
  protected spectral(): (SpectralLayer | DiagonalFactor)[] {
    return this.factors.map((f) => {
      if (f.kind === 'diagonal') return f;
      const ia = augmentedInputs(f.geometry);
      return { kind: 'eigenbasis', slice: f.slice, geometry: f.geometry, qa: f.qa, qg: f.qg, eigenvalue: (o: number, i: number) => f.eigenvalues[o * ia + i]!, candidates: () => allPairs(f.geometry) };
    });
  }

  override trace(): number {
    let t = 0;
    for (const f of this.factors) t += (f.kind === 'diagonal' ? f.values : f.eigenvalues).reduce((s, x) => s + x, 0);
    return t;
  }

  /** The rotation is orthogonal: ‖F_l‖_F = ‖Λ‖_F. */
  frobeniusNorm(): number {
    let s = 0;
    for (const f of this.factors) {
      const x = f.kind === 'diagonal' ? f.values : f.eigenvalues;
      s += dot(x, x);
    }
    return Math.sqrt(s);
  }

  scale(c: number): EkfacFisher {
    checkScale(c);
    return new EkfacFisher(
      this.info,
      this.layout,
      this.factors.map((f) => (f.kind === 'diagonal' ? { ...f, values: f.values.map((x) => c * x) } : { ...f, eigenvalues: f.eigenvalues.map((x) => c * x) })),
      this.mode,
    );
  }

  /** Shards' EK-FACs have their own eigenbases, from their own factors: no merge is exact (merge their K-FACs, then compute EK-FAC's second pass). */
  override merge(): never {
    throw new RangeError('EK-FAC Fishers of shards do not merge: each has the eigenbases of its own shard\'s factors, and Λ belongs to them. Merge the shards\' kfac Fishers (exact), or compute ekfac on the whole data');
  }

  /** `name.QA`, `name.QG`, `name.eigenvalues` per factored layer; the others' diagonals under their parameter names. */
  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const f of this.factors) {
      if (f.kind === 'diagonal') {
        diagonalTensors(f, this.layout, dtype, out);
        continue;
      }
      const ia = augmentedInputs(f.geometry);
      const outputs = f.geometry.outputs;
      out.set(`${f.slice.name}.QA`, { dtype, shape: [ia, ia], data: cast(f.qa, dtype) });
      out.set(`${f.slice.name}.QG`, { dtype, shape: [outputs, outputs], data: cast(f.qg, dtype) });
      out.set(`${f.slice.name}.eigenvalues`, { dtype, shape: [outputs, ia], data: cast(f.eigenvalues, dtype) });
    }
    return out;
  }
}

export const ekfac: StructureType = {
  name: 'ekfac',
  engineWork: ['kfac', 'ekfac'],
  // K-FAC's sums and factors, the eigenvectors, and Λ's sums and result.
  hostBytes: (model) =>
    8 *
    (3 * kfacEntries(model) +
      model.layout.layers.reduce((s, l) => {
        const k = kroneckerGeometry(l.node);
        return s + (k ? augmentedInputs(k) ** 2 + k.outputs ** 2 + 3 * k.outputs * augmentedInputs(k) : 0);
      }, 0)),
  start(model, options) {
    const kfacSums = new KfacSums(model);
    let bases: (KroneckerBasis | undefined)[] | undefined;
    let squares: (CompensatedSum | undefined)[] = [];
    return {
      async add(loaded, batch, labels) {
        if (!bases) {
          kfacSums.add(await loaded.kroneckerSums(batch, labels, options.kfac));
          return;
        }
        (await loaded.rotatedSquareSums(batch, labels, bases)).forEach((s, k) => s && squares[k]!.add(s));
      },
      nextPass() {
        if (bases) return false;
        // The eigenvectors do not depend on the factors' scales.
        const factors = kfacSums.factors(1);
        bases = factors.map((f) => (f.kind === 'kronecker' ? { qa: symmetricEigen(f.a, augmentedInputs(f.geometry)).vectors, qg: symmetricEigen(f.g, f.geometry.outputs).vectors } : undefined));
        squares = factors.map((f) => (f.kind === 'kronecker' ? new CompensatedSum(f.geometry.outputs * augmentedInputs(f.geometry)) : undefined));
        return true;
      },
      result(info) {
        if (!bases) throw new Error('EK-FAC needs its second pass');
        const c = kindScale(info);
        const factors: EkfacFactor[] = kfacSums.factors(c).map((f, k) =>
          f.kind === 'diagonal' ? f : { kind: 'eigenbasis', slice: f.slice, geometry: f.geometry, qa: bases![k]!.qa, qg: bases![k]!.qg, eigenvalues: squares[k]!.result(c) },
        );
        return new EkfacFisher(info, model.layout, factors, options.kfac);
      },
    };
  },
  load: async (file) =>
    new EkfacFisher(
      file.info,
      file.layout,
      await Promise.all(
        file.layout.layers.map(async (slice, layer): Promise<EkfacFactor> => {
          if (!file.has(`${slice.name}.QA`)) return { kind: 'diagonal', slice, values: await file.parameterValues(slice) };
          const geometry = factorShape(file.layout, layer);
          const ia = augmentedInputs(geometry);
          const out = geometry.outputs;
          return {
            kind: 'eigenbasis',
            slice,
            geometry,
            qa: await file.values(`${slice.name}.QA`, [ia, ia]),
            qg: await file.values(`${slice.name}.QG`, [out, out]),
            eigenvalues: await file.values(`${slice.name}.eigenvalues`, [out, ia]),
          };
        }),
      ),
      file.info.kfac ?? 'expand',
    ),
};
