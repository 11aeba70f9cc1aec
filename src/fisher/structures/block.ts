/**
 * `block`: the full block of each parametrised layer (weight then bias),
 * nothing across layers: F_l = c Σ_{n,v} g_{n,v,l} g_{n,v,l}ᵀ, from the
 * engine's Gram tiles of each layer's columns. Output `name.block` [P_l, P_l].
 */
import type { Tensor } from '../../io/dtypes.js';
import { InputError } from '../../layers/errors.js';
import { choleskyFactor, choleskyLogdet, choleskySolveFactored, matVec, NotPositiveDefiniteError } from '../../linalg/cholesky.js';
import { dot } from '../../linalg/orthonormal.js';
import type { LayerBlock, TensorLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import {
  BaseFisher,
  cast,
  checkCombinable,
  checkDamping,
  checkLength,
  checkScale,
  mergeOf,
  unionInfo,
  weightedSum,
  withRetries,
  type DenseBlock,
  type DenseBlocks,
  type FileDtype,
  type FisherInfo,
  type FisherMatrix,
} from '../result.js';
import { MAX_DENSE_ENTRIES, retryFloor, spillEntries } from './full.js';
import { BYTES_PER_ENTRY, spillBytes, spillHostBytes, spillNote, spillRun, StoredFisher, type SpilledBlock } from './spill.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';

/** One dense block per parametrised layer, in layout order; zero across layers. */
export class BlockFisher extends BaseFisher implements DenseBlocks {
  constructor(
    info: FisherInfo,
    layout: TensorLayout,
    /** blocks[l]: [P_l, P_l] row-major, for layout.layers[l]. */
    readonly blocks: readonly Float64Array[],
  ) {
    super(info, layout);
    if (blocks.length !== layout.layers.length) throw new RangeError(`${blocks.length} blocks for ${layout.layers.length} parametrised layers`);
    layout.layers.forEach((l, k) => checkLength(blocks[k]!, l.size * l.size, `block ${l.name}`));
  }

  #each<T>(f: (layer: LayerBlock, block: Float64Array) => T): T[] {
    return this.layout.layers.map((l, k) => f(l, this.blocks[k]!));
  }

  denseBlocks(): DenseBlock[] {
    return this.#each(({ name, offset, size }, b) => ({ name, offset, size, rows: (row0: number, count: number) => b.subarray(row0 * size, (row0 + count) * size) }));
  }

  diagonal(): Float64Array {
    const out = new Float64Array(this.size);
    this.#each(({ offset, size }, b) => {
      for (let i = 0; i < size; i++) out[offset + i] = b[i * size + i]!;
    });
    return out;
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    const out = new Float64Array(this.size);
    this.#each(({ offset, size }, b) => out.set(matVec(b, size, size, v, offset), offset));
    return out;
  }

  frobeniusNorm(): number {
    return Math.sqrt(this.blocks.reduce((s, b) => s + dot(b, b), 0));
  }

  override toDense(): Float64Array {
    this.checkDenseFits();
    const p = this.size;
    const out = new Float64Array(p * p);
    this.#each(({ offset, size }, b) => {
      for (let r = 0; r < size; r++) out.set(b.subarray(r * size, (r + 1) * size), (offset + r) * p + offset);
    });
    return out;
  }

  /**
   * One Cholesky factorisation per block; where one is not positive definite
   * at the damping asked, every block is solved again at the larger damping
   * that one needed (one damping for the whole matrix).
   */
  protected exactSolve(g: ArrayLike<number>, damping: number, retry: boolean): { x: Float64Array; damping: number; retries: number } {
    const r = withRetries(
      (d) =>
        this.#each(({ size, name }, b) => {
          try {
            return choleskyFactor(b, size, d);
          } catch (e) {
            if (e instanceof NotPositiveDefiniteError) throw new NotPositiveDefiniteError(e.pivot, e.value, `block ${name}`);
            throw e;
          }
        }),
      damping,
      retryFloor(this.trace(), this.size),
      retry,
    );
    const x = new Float64Array(this.size);
    this.layout.layers.forEach(({ offset, size }, k) => x.set(choleskySolveFactored(r.value[k]!, size, g, offset), offset));
    return { x, damping: r.damping, retries: r.retries };
  }

  logdet(options: { damping?: number } = {}): number {
    const damping = checkDamping(options.damping);
    return this.#each(({ size }, b) => choleskyLogdet(choleskyFactor(b, size, damping), size)).reduce((s, x) => s + x, 0);
  }

  scale(c: number): BlockFisher {
    checkScale(c);
    return new BlockFisher(this.info, this.layout, this.blocks.map((b) => b.map((x) => c * x)));
  }

  override add(other: FisherMatrix): BlockFisher {
    checkCombinable('add', this, [other]);
    const o = other as BlockFisher;
    return new BlockFisher(unionInfo([this.info, o.info]), this.layout, this.blocks.map((b, k) => weightedSum([b, o.blocks[k]!], [1, 1])));
  }

  override merge(others: readonly FisherMatrix[]): BlockFisher {
    const { all, info, weights } = mergeOf(this, others);
    return new BlockFisher(info, this.layout, this.blocks.map((_, k) => weightedSum(all.map((f) => f.blocks[k]!), weights)));
  }

  /** `name.block` [P_l, P_l] per parametrised layer. */
  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map(this.#each((l, b) => [`${l.name}.block`, { dtype, shape: [l.size, l.size], data: cast(b, dtype) }] as const));
  }
}

const blocksOf = (layout: TensorLayout): SpilledBlock[] => layout.layers.map((l) => ({ tensor: `${l.name}.block`, offset: l.offset, size: l.size }));
const entriesOf = (layout: TensorLayout) => layout.layers.reduce((s, l) => s + l.size * l.size, 0);

export const block: StructureType = {
  name: 'block',
  engineWork: ['block'],
  hostBytes: (model, o) => {
    const entries = spillEntries(entriesOf(model.layout), o);
    return entries === undefined ? BYTES_PER_ENTRY * entriesOf(model.layout) : spillHostBytes(blocksOf(model.layout), entries);
  },
  diskBytes: (model, o) => (spillEntries(entriesOf(model.layout), o) === undefined ? 0 : spillBytes(blocksOf(model.layout))),
  note: (model, o) => {
    const entries = spillEntries(entriesOf(model.layout), o);
    return entries === undefined ? undefined : spillNote(blocksOf(model.layout), entries);
  },
  start(model, o, info) {
    const layers = model.layout.layers;
    const entries = entriesOf(model.layout);
    const spill = spillEntries(entries, o);
    if (spill === undefined && entries > MAX_DENSE_ENTRIES) {
      const widest = layers.reduce((a, b) => (b.size > a.size ? b : a));
      throw new InputError(
        `the block Fisher has ${entries.toExponential(2)} entries (${((16 * entries) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host; the largest block, ${widest.name}, has P_l = ${widest.size}), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} held in memory; give a float32 output file to write it to tile by tile, or use structure "diag" or "kfac"`,
      );
    }
    // Tiles of each layer's rows, straight to the file.
    if (spill !== undefined) return spillRun(model, info, o.spill!, blocksOf(model.layout), spill);
    const sums = layers.map((l) => new CompensatedSum(l.size * l.size));
    const blocks = layers.map(({ offset, size }) => ({ offset, size }));
    return {
      async add(loaded, batch, labels) {
        await loaded.gramSum(batch, (t) => sums[t.block]!.add(t.values, t.row0 * blocks[t.block]!.size), labels, blocks);
      },
      result(info) {
        const values = sums.map((s, k) => {
          const b = s.result(kindScale(info));
          mirrorUpper(b, blocks[k]!.size);
          return b;
        });
        return new BlockFisher(info, model.layout, values);
      },
    };
  },
  async load(file) {
    const blocks = blocksOf(file.layout);
    // Beyond what the host holds, the file itself is the matrix: read a slice at a time.
    if (entriesOf(file.layout) > MAX_DENSE_ENTRIES) return StoredFisher.open(file, blocks);
    return new BlockFisher(file.info, file.layout, await Promise.all(blocks.map((b) => file.values(b.tensor, [b.size, b.size]))));
  },
};
