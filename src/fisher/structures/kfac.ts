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
import { symmetricEigen, type SymmetricEigen } from '../../linalg/eigen.js';
import type { LayerSlice, ParameterLayout } from '../../model/layout.js';
import type { Network } from '../../model/network.js';
import { CompensatedSum } from '../accumulator.js';
import type { KfacMode } from '../options.js';
import { BaseFisher, cast, checkLength, type FileDtype, type FisherInfo } from '../result.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';


/** A Kronecker-factored layer: F_l ≈ G ⊗ A over its augmented [out, in (+1)] parameters. */
export interface KroneckerFactor {
  readonly kind: 'kronecker';
  readonly slice: LayerSlice;
  readonly geometry: KroneckerGeometry;
  /** [ia, ia], ia = inputs + (bias ? 1 : 0). */
  readonly a: Float64Array;
  /** [outputs, outputs]. */
  readonly g: Float64Array;
}

/** A layer that is not Kronecker-factored: its exact diagonal, [P_l] in θ order. */
export interface DiagonalFactor {
  readonly kind: 'diagonal';
  readonly slice: LayerSlice;
  readonly values: Float64Array;
}

export type LayerFactor = KroneckerFactor | DiagonalFactor;

/** Columns of the augmented matrix [W | b]. */
export function augmentedInputs(g: KroneckerGeometry): number {
  return g.inputs + (g.bias ? 1 : 0);
}

/** The layer's slice of a θ-shaped v as the augmented [out, ia] matrix (W row-major, then b as the last column). */
export function toAugmented(g: KroneckerGeometry, v: ArrayLike<number>, offset: number): Float64Array {
  const ia = augmentedInputs(g);
  const m = new Float64Array(g.outputs * ia);
  for (let o = 0; o < g.outputs; o++) {
    for (let i = 0; i < g.inputs; i++) m[o * ia + i] = v[offset + o * g.inputs + i]!;
    if (g.bias) m[o * ia + g.inputs] = v[offset + g.outputs * g.inputs + o]!;
  }
  return m;
}

/** The inverse of toAugmented, into `out` at `offset`. */
export function fromAugmented(g: KroneckerGeometry, m: Float64Array, out: Float64Array, offset: number): void {
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
  slice: LayerSlice,
  geometry: KroneckerGeometry,
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
export function diagonalTensors(f: DiagonalFactor, layout: ParameterLayout, dtype: FileDtype, out: Map<string, Tensor>): void {
  for (const e of layout.entries.filter((e) => e.offset >= f.slice.offset && e.offset < f.slice.offset + f.slice.size)) {
    out.set(e.name, { dtype, shape: e.shape, data: cast(f.values.subarray(e.offset - f.slice.offset, e.offset - f.slice.offset + e.size), dtype) });
  }
}

/** X Y for X [r, k], Y [k, c], row-major. */
function matmul(x: Float64Array, y: Float64Array, r: number, k: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < k; j++) {
      const xij = x[i * k + j]!;
      if (xij === 0) continue;
      for (let l = 0; l < c; l++) out[i * c + l]! += xij * y[j * c + l]!;
    }
  }
  return out;
}

function transpose(x: Float64Array, r: number, c: number): Float64Array {
  const out = new Float64Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = x[i * c + j]!;
  return out;
}

/**
 * The layer's slice of v in the Kronecker eigenbasis, each coordinate (o, i)
 * multiplied by `scale(o, i)`, and back: Q_G [(Q_Gᵀ V Q_A) ⊙ S] Q_Aᵀ,
 * written into `out` at the layer's offset.
 */
export function throughEigenbasis(g: KroneckerGeometry, qa: Float64Array, qg: Float64Array, v: ArrayLike<number>, offset: number, scale: (o: number, i: number) => number, out: Float64Array): void {
  const { outputs } = g;
  const ia = augmentedInputs(g);
  const rotated = matmul(matmul(transpose(qg, outputs, outputs), toAugmented(g, v, offset), outputs, outputs, ia), qa, outputs, ia, ia);
  for (let o = 0; o < outputs; o++) for (let i = 0; i < ia; i++) rotated[o * ia + i]! *= scale(o, i);
  fromAugmented(g, matmul(matmul(qg, rotated, outputs, outputs, ia), transpose(qa, ia, ia), outputs, ia, ia), out, offset);
}

/** The K-FAC Fisher: Kronecker factors per factored layer, the exact diagonal elsewhere; zero across layers. */
export class KfacFisher extends BaseFisher {
  readonly #eigen = new Map<KroneckerFactor, { a: SymmetricEigen; g: SymmetricEigen }>();

  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
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
   * (G ⊗ A + damping·I)⁻¹ g, exactly, per factored layer through the
   * eigendecompositions: Q_G [(Q_Gᵀ V Q_A) ⊘ (λ_G λ_Aᵀ + damping)] Q_Aᵀ.
   */
  solve(g: ArrayLike<number>, options: { damping?: number } = {}): Float64Array {
    checkLength(g, this.size, 'g');
    const damping = options.damping ?? 0;
    const out = new Float64Array(this.size);
    for (const f of this.factors) {
      if (f.kind === 'diagonal') {
        solveDiagonal(f, g, damping, out);
        continue;
      }
      const e = this.eigen(f);
      solveInEigenbasis(f.slice, f.geometry, e.a.vectors, e.g.vectors, (o, i) => e.g.values[o]! * e.a.values[i]!, damping, g, out);
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
};
