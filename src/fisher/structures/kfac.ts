/**
 * `kfac` (DESIGN.md §1): per linear or conv2d layer F_l ≈ G ⊗ A over the
 * augmented [W | b] in row-major order, with c = 1/N (mean) or 1 (sum) and
 * the kind's weights over the virtual samples v:
 *
 *   expand (default)   A = (1/(N·T)) Σ_{n,t} ā ā ᵀ           G = c Σ_{n,v,t} δ δᵀ
 *   reduce             A = (1/N) Σ_n ā̄_n ā̄_nᵀ, ā̄_n = (1/T) Σ_t ā_{n,t}
 *                      G = c Σ_{n,v} δ̂ δ̂ᵀ, δ̂_{n,v} = Σ_t δ_{n,v,t}
 *
 * A is a mean under either reduction (G carries the sum), as curvlinops
 * does; A comes from the forward pass once per batch, G from every backward
 * pass. Layers that are not Kronecker-factored (layer norm, grouped conv2d)
 * carry their exact diagonal. Output `name.A`, `name.G`, and the diagonal
 * of the others under their parameter names.
 */
import type { Tensor } from '../../io/dtypes.js';
import type { KroneckerPartial } from '../../engine/engine.js';
import type { KroneckerGeometry } from '../../layers/layer.js';
import { kroneckerGeometry } from '../../layers/registry.js';
import { matmul, transpose } from '../../linalg/dense.js';
import { symmetricEigen, type SymmetricEigen } from '../../linalg/eigen.js';
import type { LayerBlock, TensorLayout } from '../../model/layout.js';
import type { Network } from '../../model/network.js';
import { CompensatedSum } from '../accumulator.js';
import type { KfacMode } from '../options.js';
import { dot } from '../../linalg/orthonormal.js';
import {
  BaseFisher,
  cast,
  mergeOf,
  checkDamping,
  checkLength,
  checkScale,
  weightedSum,
  type Eigenpairs,
  type FileDtype,
  type FisherInfo,
  type FisherMatrix,
} from '../result.js';
import type { FisherFile } from './structure.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';


/** What the Fisher's operations need of a factored layer's geometry: [W | b] is [outputs, inputs (+1)]. */
export type FactorShape = Pick<KroneckerGeometry, 'inputs' | 'outputs' | 'bias'>;

/** A Kronecker-factored layer: F_l ≈ G ⊗ A over its augmented [out, in (+1)] parameters. */
export interface KroneckerFactor {
  readonly kind: 'kronecker';
  readonly slice: LayerBlock;
  readonly geometry: FactorShape;
  /** [ia, ia], ia = inputs + (bias ? 1 : 0). */
  readonly a: Float64Array;
  /** [outputs, outputs]. */
  readonly g: Float64Array;
}

/** A layer that is not Kronecker-factored: its exact diagonal, [P_l] in θ order. */
export interface DiagonalFactor {
  readonly kind: 'diagonal';
  readonly slice: LayerBlock;
  readonly values: Float64Array;
}

export type LayerFactor = KroneckerFactor | DiagonalFactor;

/** Columns of the augmented matrix [W | b]. */
export function augmentedInputs(g: FactorShape): number {
  return g.inputs + (g.bias ? 1 : 0);
}

/** The layer's slice of a θ-shaped v as the augmented [out, ia] matrix (W row-major, then b as the last column). */
export function toAugmented(g: FactorShape, v: ArrayLike<number>, offset: number): Float64Array {
  const ia = augmentedInputs(g);
  const m = new Float64Array(g.outputs * ia);
  for (let o = 0; o < g.outputs; o++) {
    for (let i = 0; i < g.inputs; i++) m[o * ia + i] = v[offset + o * g.inputs + i]!;
    if (g.bias) m[o * ia + g.inputs] = v[offset + g.outputs * g.inputs + o]!;
  }
  return m;
}

/** The inverse of toAugmented, into `out` at `offset`. */
export function fromAugmented(g: FactorShape, m: Float64Array, out: Float64Array, offset: number): void {
  const ia = augmentedInputs(g);
  for (let o = 0; o < g.outputs; o++) {
    for (let i = 0; i < g.inputs; i++) out[offset + o * g.inputs + i] = m[o * ia + i]!;
    if (g.bias) out[offset + g.outputs * g.inputs + o] = m[o * ia + g.inputs]!;
  }
}

/**
 * (block + damping·I)⁻¹ g on a layer whose block the Kronecker eigenbasis
 * diagonalises, with eigenvalue(o, i) there (K-FAC: λ_G,o λ_A,i; EK-FAC: Λ_oi).
 */
export function solveInEigenbasis(
  slice: LayerBlock,
  geometry: FactorShape,
  qa: Float64Array,
  qg: Float64Array,
  eigenvalue: (o: number, i: number) => number,
  damping: number,
  g: ArrayLike<number>,
  out: Float64Array,
): void {
  throughEigenbasis(geometry, qa, qg, g, slice.offset, (o, i) => {
    const d = eigenvalue(o, i) + damping;
    if (!(d > 0)) throw new RangeError(`${slice.name}: its block + damping·I is singular (eigenvalue ${d} at (${o}, ${i})); pass a positive damping`);
    return 1 / d;
  }, out);
}

/** diag ⊙ v on an unfactored layer's slice, into out. */
export function mvDiagonal(f: DiagonalFactor, v: ArrayLike<number>, out: Float64Array): void {
  for (let i = 0; i < f.slice.size; i++) out[f.slice.offset + i] = f.values[i]! * v[f.slice.offset + i]!;
}

/** (diag + damping)⁻¹ g on an unfactored layer's slice, into out. */
export function solveDiagonal(f: DiagonalFactor, g: ArrayLike<number>, damping: number, out: Float64Array): void {
  const at = f.slice.offset;
  for (let i = 0; i < f.slice.size; i++) {
    const d = f.values[i]! + damping;
    if (!(d > 0)) throw new RangeError(`${f.slice.name}: F + damping·I is singular at its parameter ${i} (value ${d}); pass a positive damping`);
    out[at + i] = g[at + i]! / d;
  }
}

/** The tensors of an unfactored layer's diagonal, under its parameters' names. */
export function diagonalTensors(f: DiagonalFactor, layout: TensorLayout, dtype: FileDtype, out: Map<string, Tensor>): void {
  for (const e of layout.entries.filter((e) => e.offset >= f.slice.offset && e.offset < f.slice.offset + f.slice.size)) {
    out.set(e.name, { dtype, shape: e.shape, data: cast(f.values.subarray(e.offset - f.slice.offset, e.offset - f.slice.offset + e.size), dtype) });
  }
}

/**
 * The layer's slice of v in the Kronecker eigenbasis, each coordinate (o, i)
 * multiplied by `scale(o, i)`, and back: Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ,
 * written into `out` at the layer's offset.
 */
export function throughEigenbasis(g: FactorShape, qa: Float64Array, qg: Float64Array, v: ArrayLike<number>, offset: number, scale: (o: number, i: number) => number, out: Float64Array): void {
  const { outputs } = g;
  const ia = augmentedInputs(g);
  const rotated = matmul(matmul(transpose(qg, outputs, outputs), toAugmented(g, v, offset), outputs, outputs, ia), qa, outputs, ia, ia);
  for (let o = 0; o < outputs; o++) for (let i = 0; i < ia; i++) rotated[o * ia + i]! *= scale(o, i);
  fromAugmented(g, matmul(matmul(qg, rotated, outputs, outputs, ia), transpose(qa, ia, ia), outputs, ia, ia), out, offset);
}

/** log x for x > 0; a clear error naming the layer and coordinate otherwise. */
export function logOfPositive(x: number, layer: string, o: number, i: number): number {
  if (!(x > 0)) throw new RangeError(`${layer}: F + damping·I is singular (eigenvalue ${x} at (${o}, ${i})); pass a positive damping`);
  return Math.log(x);
}

/** Σ log(F_ii + δ) over an unfactored layer. */
export function logdetDiagonal(f: DiagonalFactor, damping: number): number {
  let s = 0;
  f.values.forEach((x, i) => (s += logOfPositive(x + damping, f.slice.name, i, 0)));
  return s;
}

/** λ(o, i) = g_o a_i. */
function productsOf(g: Float64Array, a: Float64Array): (o: number, i: number) => number {
  return (o, i) => g[o]! * a[i]!;
}

/**
 * The pairs (o, i) that can hold the k largest products g_o a_i of two
 * descending lists: with both nonnegative, a pair is beaten by every pair
 * (o' ≤ o, i' ≤ i), so only (o + 1)(i + 1) ≤ k qualify. Factors are PSD;
 * rounding's small negative eigenvalues count as 0 here.
 */
function topProducts(g: Float64Array, a: Float64Array, k: number): [number, number][] {
  const out: [number, number][] = [];
  for (let o = 0; o < g.length && o < k; o++) for (let i = 0; i < a.length && (o + 1) * (i + 1) <= k; i++) out.push([o, i]);
  return out;
}

/**
 * A factored layer in its Kronecker eigenbasis: its block is diagonal there,
 * eigenvalue(o, i) with eigenvector q_G,o ⊗ q_A,i; `candidates(k)` are the
 * pairs (o, i) that can hold its top k eigenvalues.
 */
export interface SpectralLayer {
  kind: 'eigenbasis';
  slice: LayerBlock;
  geometry: FactorShape;
  qa: Float64Array;
  qg: Float64Array;
  eigenvalue: (o: number, i: number) => number;
  candidates: (k: number) => readonly [number, number][];
}

/** Every pair (o, i) of a layer's [W | b]. */
export function allPairs(geometry: FactorShape): [number, number][] {
  const ia = augmentedInputs(geometry);
  const out: [number, number][] = [];
  for (let o = 0; o < geometry.outputs; o++) for (let i = 0; i < ia; i++) out.push([o, i]);
  return out;
}

/**
 * The top k eigenpairs of a block-diagonal F whose blocks are diagonal in
 * Kronecker eigenbases (K-FAC, EK-FAC) or diagonal (unfactored layers).
 */
export function topEigenpairs(layers: readonly (SpectralLayer | DiagonalFactor)[], k: number, p: number): Eigenpairs {
  const entries: { value: number; layer: number; o: number; i: number }[] = [];
  layers.forEach((l, layer) => {
    if (l.kind === 'diagonal') l.values.forEach((value, i) => entries.push({ value, layer, o: i, i: -1 }));
    else for (const [o, i] of l.candidates(k)) entries.push({ value: Math.max(0, l.eigenvalue(o, i)), layer, o, i });
  });
  entries.sort((x, y) => y.value - x.value);
  const top = entries.slice(0, k);
  const vectors = new Float64Array(k * p);
  top.forEach((e, j) => {
    const out = vectors.subarray(j * p, (j + 1) * p);
    const l = layers[e.layer]!;
    if (l.kind === 'diagonal') {
      out[l.slice.offset + e.o] = 1;
      return;
    }
    const { outputs } = l.geometry;
    const ia = augmentedInputs(l.geometry);
    const m = new Float64Array(outputs * ia);
    for (let o = 0; o < outputs; o++) for (let i = 0; i < ia; i++) m[o * ia + i] = l.qg[o * outputs + e.o]! * l.qa[i * ia + e.i]!;
    fromAugmented(l.geometry, m, out, l.slice.offset);
  });
  if (top.length < k) throw new RangeError(`only ${top.length} eigenpairs are available below k = ${k}`);
  return { values: Float64Array.from(top, (e) => e.value), vectors, method: 'exact', converged: true };
}

/** The factored-layer shape of a layer block of a Fisher file: [W | b] from its weight's shape [out, …] and whether it has a bias. */
export function factorShape(layout: TensorLayout, layer: number): FactorShape {
  const entries = layout.entries.filter((e) => e.layer === layer);
  const weight = entries.find((e) => e.role === 'weight');
  if (!weight || weight.shape.length < 2) throw new RangeError(`layer ${layout.layers[layer]!.name} has no weight of rank ≥ 2 to factor`);
  return { outputs: weight.shape[0]!, inputs: weight.size / weight.shape[0]!, bias: entries.some((e) => e.role === 'bias') };
}

/** A Fisher file's layers as K-FAC factors: `name.A` and `name.G` where present, else the layer's diagonal. */
export async function loadFactors(file: FisherFile): Promise<LayerFactor[]> {
  return Promise.all(
    file.layout.layers.map(async (slice, layer): Promise<LayerFactor> => {
      if (!file.has(`${slice.name}.A`)) return { kind: 'diagonal', slice, values: await file.parameterValues(slice) };
      const geometry = factorShape(file.layout, layer);
      const ia = augmentedInputs(geometry);
      return { kind: 'kronecker', slice, geometry, a: await file.values(`${slice.name}.A`, [ia, ia]), g: await file.values(`${slice.name}.G`, [geometry.outputs, geometry.outputs]) };
    }),
  );
}

/**
 * What K-FAC and EK-FAC share: each factored layer's block is diagonal in
 * its Kronecker eigenbasis (K-FAC: the products λ_G,o λ_A,i; EK-FAC: Λ_oi),
 * so the damped solve, the top eigenpairs and the log-determinant are exact
 * there; unfactored layers are their diagonal.
 */
export abstract class EigenbasisFisher extends BaseFisher {
  /** Each parametrised layer, in its eigenbasis or as its diagonal, in layout order. */
  protected abstract spectral(): (SpectralLayer | DiagonalFactor)[];

  /** (block + δI)⁻¹ g per layer: through the eigenbasis, (eigenvalue + δ)⁻¹ there. */
  protected exactSolve(g: ArrayLike<number>, damping: number): { x: Float64Array; damping: number; retries: number } {
    const out = new Float64Array(this.size);
    for (const l of this.spectral()) {
      if (l.kind === 'diagonal') solveDiagonal(l, g, damping, out);
      else solveInEigenbasis(l.slice, l.geometry, l.qa, l.qg, l.eigenvalue, damping, g, out);
    }
    return { x: out, damping, retries: 0 };
  }

  protected override exactEig(k: number): Eigenpairs {
    return topEigenpairs(this.spectral(), k, this.size);
  }

  /** Σ log(eigenvalue + δ) over every layer's eigenbasis, Σ log(F_ii + δ) over the unfactored ones. */
  logdet(options: { damping?: number } = {}): number {
    const damping = checkDamping(options.damping);
    let s = 0;
    for (const l of this.spectral()) {
      if (l.kind === 'diagonal') s += logdetDiagonal(l, damping);
      else for (const [o, i] of allPairs(l.geometry)) s += logOfPositive(l.eigenvalue(o, i) + damping, l.slice.name, o, i);
    }
    return s;
  }
}

/** The K-FAC Fisher: Kronecker factors per factored layer, the exact diagonal elsewhere; zero across layers. */
export class KfacFisher extends EigenbasisFisher {
  readonly #eigen = new Map<KroneckerFactor, { a: SymmetricEigen; g: SymmetricEigen }>();

  constructor(
    info: FisherInfo,
    layout: TensorLayout,
    /** One per parametrised layer, in layout order. */
    readonly factors: readonly LayerFactor[],
    readonly mode: KfacMode,
  ) {
    super(info, layout);
    if (factors.length !== layout.layers.length) throw new RangeError(`${factors.length} factors for ${layout.layers.length} parametrised layers`);
    for (const f of factors) {
      if (f.kind === 'diagonal') checkLength(f.values, f.slice.size, `diagonal of ${f.slice.name}`);
      else {
        checkLength(f.a, augmentedInputs(f.geometry) ** 2, `${f.slice.name}.A`);
        checkLength(f.g, f.geometry.outputs ** 2, `${f.slice.name}.G`);
      }
    }
  }

  diagonal(): Float64Array {
    const out = new Float64Array(this.size);
    for (const f of this.factors) {
      if (f.kind === 'diagonal') out.set(f.values, f.slice.offset);
      else {
        const ia = augmentedInputs(f.geometry);
        const m = Float64Array.from({ length: f.geometry.outputs * ia }, (_, k) => f.g[Math.floor(k / ia) * (f.geometry.outputs + 1)]! * f.a[(k % ia) * (ia + 1)]!);
        fromAugmented(f.geometry, m, out, f.slice.offset);
      }
    }
    return out;
  }

  /** (G ⊗ A) vec(V) = vec(G V A) per factored layer (A and G symmetric). */
  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    const out = new Float64Array(this.size);
    for (const f of this.factors) {
      const at = f.slice.offset;
      if (f.kind === 'diagonal') {
        mvDiagonal(f, v, out);
        continue;
      }
      const { outputs } = f.geometry;
      const ia = augmentedInputs(f.geometry);
      fromAugmented(f.geometry, matmul(matmul(f.g, toAugmented(f.geometry, v, at), outputs, outputs, ia), f.a, outputs, ia, ia), out, at);
    }
    return out;
  }

  /** The eigendecompositions of A and G, computed once per layer on first use. */
  eigen(f: KroneckerFactor): { a: SymmetricEigen; g: SymmetricEigen } {
    let e = this.#eigen.get(f);
    if (!e) {
      e = { a: symmetricEigen(f.a, augmentedInputs(f.geometry)), g: symmetricEigen(f.g, f.geometry.outputs) };
      this.#eigen.set(f, e);
    }
    return e;
  }

  /**
   * Each factored layer through the eigendecompositions of A and G: the
   * damped solve is Q_G [(Q_Gᵀ V Q_A) ⊘ (λ_G λ_Aᵀ + δ)] Q_Aᵀ, exactly; the
   * top pairs are among (o + 1)(i + 1) ≤ k.
   */
  protected spectral(): (SpectralLayer | DiagonalFactor)[] {
    return this.factors.map((f) => {
      if (f.kind === 'diagonal') return f;
      const e = this.eigen(f);
      return { kind: 'eigenbasis', slice: f.slice, geometry: f.geometry, qa: e.a.vectors, qg: e.g.vectors, eigenvalue: productsOf(e.g.values, e.a.values), candidates: (k: number) => topProducts(e.g.values, e.a.values, k) };
    });
  }

  /**
   * Martens & Grosse's factored Tikhonov damping (2015, §6.3): per layer
   * (G + (√δ/π) I) ⊗ (A + π√δ I) in place of G ⊗ A + δI, with
   * π = √((tr A / dim A) / (tr G / dim G)) balancing the two factors. It
   * adds δ·I plus the cross terms √δ(π⁻¹ A ⊕ π G): more damping than asked,
   * as K-FAC optimisers use it. Unfactored layers get δ exactly.
   */
  protected override factoredSolve(g: ArrayLike<number>, damping: number): Float64Array {
    const out = new Float64Array(this.size);
    const root = Math.sqrt(damping);
    for (const f of this.factors) {
      if (f.kind === 'diagonal') {
        solveDiagonal(f, g, damping, out);
        continue;
      }
      const e = this.eigen(f);
      const ia = augmentedInputs(f.geometry);
      const meanA = e.a.values.reduce((t, x) => t + x, 0) / ia;
      const meanG = e.g.values.reduce((t, x) => t + x, 0) / f.geometry.outputs;
      const pi = meanA > 0 && meanG > 0 ? Math.sqrt(meanA / meanG) : 1;
      solveInEigenbasis(f.slice, f.geometry, e.a.vectors, e.g.vectors, (o, i) => (e.g.values[o]! + root / pi) * (e.a.values[i]! + pi * root), 0, g, out);
    }
    return out;
  }

  override trace(): number {
    let t = 0;
    for (const f of this.factors) {
      if (f.kind === 'diagonal') t += f.values.reduce((s, x) => s + x, 0);
      else {
        const ia = augmentedInputs(f.geometry);
        let ta = 0;
        let tg = 0;
        for (let i = 0; i < ia; i++) ta += f.a[i * (ia + 1)]!;
        for (let o = 0; o < f.geometry.outputs; o++) tg += f.g[o * (f.geometry.outputs + 1)]!;
        t += ta * tg;
      }
    }
    return t;
  }

  /** ‖G ⊗ A‖_F = ‖G‖_F ‖A‖_F per layer. */
  frobeniusNorm(): number {
    let s = 0;
    for (const f of this.factors) s += f.kind === 'diagonal' ? dot(f.values, f.values) : dot(f.a, f.a) * dot(f.g, f.g);
    return Math.sqrt(s);
  }

  /** Each layer's block G[o, o'] A[i, i'] at its θ coordinates. */
  override toDense(): Float64Array {
    this.checkDenseFits();
    const p = this.size;
    const out = new Float64Array(p * p);
    for (const f of this.factors) {
      const at = f.slice.offset;
      if (f.kind === 'diagonal') {
        f.values.forEach((x, i) => (out[(at + i) * p + at + i] = x));
        continue;
      }
      const { inputs, outputs } = f.geometry;
      const ia = augmentedInputs(f.geometry);
      // θ index of augmented coordinate (o, i): the weight row-major, then the bias.
      const theta = (o: number, i: number) => at + (i < inputs ? o * inputs + i : outputs * inputs + o);
      for (let o = 0; o < outputs; o++) {
        for (let i = 0; i < ia; i++) {
          const row = theta(o, i) * p;
          for (let o2 = 0; o2 < outputs; o2++) {
            const gv = f.g[o * outputs + o2]!;
            for (let i2 = 0; i2 < ia; i2++) out[row + theta(o2, i2)] = gv * f.a[i * ia + i2]!;
          }
        }
      }
    }
    return out;
  }

  /** c·F: G and the unfactored diagonals scale (A is a mean of the inputs). */
  scale(c: number): KfacFisher {
    checkScale(c);
    return new KfacFisher(
      this.info,
      this.layout,
      this.factors.map((f) => (f.kind === 'diagonal' ? { ...f, values: f.values.map((x) => c * x) } : { ...f, g: f.g.map((x) => c * x) })),
      this.mode,
    );
  }

  /**
   * The K-FAC of the union of the shards' data, exactly: A is a mean over
   * the samples' rows (weights N_k / N), G and the unfactored diagonals
   * follow the reduction (means weighted N_k / N, sums added).
   */
  override merge(others: readonly FisherMatrix[]): KfacFisher {
    const { all, info, weights: byReduction } = mergeOf(this, others);
    const byRows = all.map((f) => f.info.n / info.n);
    const factors = this.factors.map((f, l): LayerFactor => {
      const parts = all.map((x) => x.factors[l]!);
      if (f.kind === 'diagonal') return { ...f, values: weightedSum(parts.map((x) => (x as DiagonalFactor).values), byReduction) };
      return { ...f, a: weightedSum(parts.map((x) => (x as KroneckerFactor).a), byRows), g: weightedSum(parts.map((x) => (x as KroneckerFactor).g), byReduction) };
    });
    return new KfacFisher(info, this.layout, factors, this.mode);
  }

  /** `name.A` [ia, ia] and `name.G` [out, out] per factored layer; the others' diagonals under their parameter names. */
  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const f of this.factors) {
      if (f.kind === 'kronecker') {
        const ia = augmentedInputs(f.geometry);
        out.set(`${f.slice.name}.A`, { dtype, shape: [ia, ia], data: cast(f.a, dtype) });
        out.set(`${f.slice.name}.G`, { dtype, shape: [f.geometry.outputs, f.geometry.outputs], data: cast(f.g, dtype) });
        continue;
      }
      diagonalTensors(f, this.layout, dtype, out);
    }
    return out;
  }
}

/** Entries of K-FAC's factors (A and G of the factored layers, the diagonal of the others). */
export function kfacEntries(model: Network): number {
  return model.layout.layers.reduce((s, l) => {
    const k = kroneckerGeometry(l.node);
    return s + (k ? augmentedInputs(k) ** 2 + k.outputs ** 2 : l.size);
  }, 0);
}

/** K-FAC's statistics summed over the batches, per parametrised layer (DESIGN.md §1). */
export class KfacSums {
  readonly #layers;

  constructor(model: Network) {
    this.#layers = model.layout.layers.map((slice) => {
      const geometry = kroneckerGeometry(slice.node);
      if (!geometry) return { slice, diagonal: new CompensatedSum(slice.size) };
      const ia = augmentedInputs(geometry);
      return { slice, geometry, a: new CompensatedSum(ia * ia), g: new CompensatedSum(geometry.outputs ** 2), count: 0 };
    });
  }

  add(parts: readonly KroneckerPartial[]): void {
    parts.forEach((part, k) => {
      const l = this.#layers[k]!;
      if (part.kind === 'diagonal') {
        l.diagonal!.add(part.squares);
        return;
      }
      const { inputs, bias } = l.geometry!;
      const ia = inputs + (bias ? 1 : 0);
      // The augmented A: [[Σ ā āᵀ, Σ ā], [Σ āᵀ, rows]], upper triangles.
      const a = new Float64Array(ia * ia);
      for (let r = 0; r < inputs; r++) for (let c = r; c < inputs; c++) a[r * ia + c] = part.aa[r * inputs + c]!;
      if (bias) {
        for (let r = 0; r < inputs; r++) a[r * ia + inputs] = part.a[r]!;
        a[ia * ia - 1] = part.rows;
      }
      l.a!.add(a);
      l.g!.add(part.gg);
      l.count! += part.rows;
    });
  }

  /** The factors: A a mean over its rows (N·T for expand, N for reduce); G and the diagonals times `scale` (the kind's c/M). */
  factors(scale: number): LayerFactor[] {
    return this.#layers.map((l) => {
      if (!l.geometry) return { kind: 'diagonal', slice: l.slice, values: l.diagonal!.result(scale) };
      const a = l.a!.result(1 / l.count!);
      mirrorUpper(a, augmentedInputs(l.geometry));
      const g = l.g!.result(scale);
      mirrorUpper(g, l.geometry.outputs);
      return { kind: 'kronecker', slice: l.slice, geometry: l.geometry, a, g };
    });
  }
}

export const kfac: StructureType = {
  name: 'kfac',
  engineWork: ['kfac'],
  hostBytes: (model) => 3 * 8 * kfacEntries(model),
  start(model, options) {
    const sums = new KfacSums(model);
    return {
      async add(loaded, batch, labels) {
        sums.add(await loaded.kroneckerSums(batch, labels, options.kfac));
      },
      result: (info) => new KfacFisher(info, model.layout, sums.factors(kindScale(info)), options.kfac),
    };
  },
  load: async (file) => new KfacFisher(file.info, file.layout, await loadFactors(file), file.info.kfac ?? 'expand'),
};
