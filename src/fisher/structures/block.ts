/**
 * `block`: the full block of each parametrised layer (weight then bias),
 * nothing across layers: F_l = c Σ_{n,v} g_{n,v,l} g_{n,v,l}ᵀ, from the
 * engine's Gram tiles of each layer's columns. Output `name.block` [P_l, P_l].
 */
import type { Tensor } from '../../io/dtypes.js';
import { InputError } from '../../layers/errors.js';
import { choleskySolve, matVec } from '../../linalg/cholesky.js';
import type { LayerSlice, ParameterLayout } from '../../model/layout.js';
import { CompensatedSum } from '../accumulator.js';
import { BaseFisher, cast, checkLength, type FileDtype, type FisherInfo } from '../result.js';
import type { Network } from '../../model/network.js';
import { MAX_DENSE_ENTRIES, spillEntries } from './full.js';
import { BYTES_PER_ENTRY, spillBytes, spillHostBytes, spillNote, spillRun, type SpilledBlock } from './spill.js';
import { kindScale, mirrorUpper, type StructureType } from './structure.js';

/** One dense block per parametrised layer, in layout order; zero across layers. */
export class BlockFisher extends BaseFisher {
  constructor(
    info: FisherInfo,
    layout: ParameterLayout,
    /** blocks[l]: [P_l, P_l] row-major, for layout.layers[l]. */
    readonly blocks: readonly Float64Array[],
  ) {
    super(info, layout);
    if (blocks.length !== layout.layers.length) throw new RangeError(`${blocks.length} blocks for ${layout.layers.length} parametrised layers`);
    layout.layers.forEach((l, k) => checkLength(blocks[k]!, l.size * l.size, `block ${l.name}`));
  }

  #each<T>(f: (layer: LayerSlice, block: Float64Array) => T): T[] {
    return this.layout.layers.map((l, k) => f(l, this.blocks[k]!));
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

  /** One Cholesky solve per block. */
  solve(g: ArrayLike<number>, options: { damping?: number } = {}): Float64Array {
    checkLength(g, this.size, 'g');
    const out = new Float64Array(this.size);
    this.#each(({ offset, size, name }, b) => {
      try {
        out.set(choleskySolve(b, size, Array.prototype.slice.call(g, offset, offset + size) as number[], options.damping ?? 0), offset);
      } catch (e) {
        throw new RangeError(`block ${name}: ${(e as Error).message}`);
      }
    });
    return out;
  }

  /** `name.block` [P_l, P_l] per parametrised layer. */
  tensors(dtype: FileDtype = 'F32'): Map<string, Tensor> {
    return new Map(this.#each((l, b) => [`${l.name}.block`, { dtype, shape: [l.size, l.size], data: cast(b, dtype) }] as const));
  }
}

const blocksOf = (model: Network): SpilledBlock[] => model.layout.layers.map((l) => ({ tensor: `${l.name}.block`, offset: l.offset, size: l.size }));
const entriesOf = (model: Network) => model.layout.layers.reduce((s, l) => s + l.size * l.size, 0);

export const block: StructureType = {
  name: 'block',
  engineWork: ['block'],
  hostBytes: (model, o) => {
    const entries = spillEntries(entriesOf(model), o);
    return entries === undefined ? BYTES_PER_ENTRY * entriesOf(model) : spillHostBytes(blocksOf(model), entries);
  },
  diskBytes: (model, o) => (spillEntries(entriesOf(model), o) === undefined ? 0 : spillBytes(blocksOf(model))),
  note: (model, o) => {
    const entries = spillEntries(entriesOf(model), o);
    return entries === undefined ? undefined : spillNote(blocksOf(model), entries);
  },
  start(model, o, info) {
    const layers = model.layout.layers;
    const entries = entriesOf(model);
    const spill = spillEntries(entries, o);
    if (spill === undefined && entries > MAX_DENSE_ENTRIES) {
      const widest = layers.reduce((a, b) => (b.size > a.size ? b : a));
      throw new InputError(
        `the block Fisher has ${entries.toExponential(2)} entries (${((16 * entries) / 2 ** 30).toFixed(1)} GiB as compensated float64 on the host; the largest block, ${widest.name}, has P_l = ${widest.size}), more than the ${MAX_DENSE_ENTRIES.toExponential(1)} held in memory; give a float32 output file to write it to tile by tile, or use structure "diag" or "kfac"`,
      );
    }
    // Tiles of each layer's rows, straight to the file.
    if (spill !== undefined) return spillRun(model, info, o.spill!, blocksOf(model), spill);
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
};
