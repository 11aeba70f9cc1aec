/**
 * Diagonal blocks of F too large for host memory, written straight into a
 * safetensors file as they are computed (structures `full` and `block`; DESIGN.md §2):
 * the blocks are cut into pieces of rows, grouped into passes over the data
 * whose pieces fit the host budget together. A pass sums its pieces' upper
 * triangles in float64 (the engine's Gram tiles of those rows), fills each
 * piece's lower part from the rows of its block already written (F is
 * symmetric), and writes it at its place: the header's sizes are known in
 * advance. P is then bounded by the disk, not by RAM.
 */
import type { GramBlock } from '../../engine/engine.js';
import type { Tensor } from '../../io/dtypes.js';
import { SafetensorsStream } from '../../io/safetensors-stream.js';
import type { Network } from '../../model/network.js';
import { CompensatedSum } from '../accumulator.js';
import type { TensorLayout } from '../../model/layout.js';
import { BaseFisher, checkLength, fisherMetadata, type DenseBlock, type DenseBlocks, type FileDtype, type FisherInfo } from '../result.js';
import { kindScale, type FisherFile, type StructureRun } from './structure.js';
import { closeSync, openSync, readSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { resolve } from 'node:path';

/** Host bytes per entry of F held in memory: the compensated sum (two float64) and the result. */
export const BYTES_PER_ENTRY = 3 * 8;

/** A diagonal block of F and the tensor of the file that holds it. */
export interface SpilledBlock {
  tensor: string;
  offset: number;
  size: number;
}

interface Piece {
  block: number;
  start: number;
  count: number;
}

/** The pieces of each pass: rows of one block at a time, as many as `entries` (floats of F) allow together. */
export function spillPasses(blocks: readonly SpilledBlock[], entries: number): Piece[][] {
  const passes: Piece[][] = [];
  let pass: Piece[] = [];
  let used = 0;
  blocks.forEach(({ size }, block) => {
    const rows = Math.max(1, Math.min(size, Math.floor(entries / size)));
    for (let start = 0; start < size; start += rows) {
      const count = Math.min(rows, size - start);
      if (used + count * size > entries && pass.length > 0) {
        passes.push(pass);
        pass = [];
        used = 0;
      }
      pass.push({ block, start, count });
      used += count * size;
    }
  });
  if (pass.length > 0) passes.push(pass);
  return passes;
}

/** Bytes of the file's data: the blocks as float32. */
export function spillBytes(blocks: readonly SpilledBlock[]): number {
  return blocks.reduce((s, b) => s + 4 * b.size * b.size, 0);
}

/** What the planner says of a result written to disk. */
export function spillNote(blocks: readonly SpilledBlock[], entries: number): string {
  const bytes = spillBytes(blocks);
  return `disk: the result (${(bytes / 2 ** 30).toFixed(2)} GiB as float32) goes into the output file tile by tile, ${spillPasses(blocks, entries).length} passes over the data`;
}

/** The most host bytes a pass holds. */
export function spillHostBytes(blocks: readonly SpilledBlock[], entries: number): number {
  return BYTES_PER_ENTRY * Math.max(...spillPasses(blocks, entries).map((p) => p.reduce((s, x) => s + x.count * blocks[x.block]!.size, 0)));
}

/**
 * A Fisher whose blocks live in a safetensors file, too large to hold (in
 * Python: safetensors' safe_open reads slices of it). Its diagonal is kept;
 * products read the file a slice of rows at a time, so `mv`, `quadratic`,
 * `solve` by conjugate gradients and `eig` by Lanczos work at any P, each
 * product one pass over the file. A dense factorisation (the exact solve,
 * logdet) does not fit, and is refused.
 */
export class StoredFisher extends BaseFisher implements DenseBlocks {
  constructor(
    info: FisherInfo,
    layout: TensorLayout,
    /** The file holding the blocks. */
    readonly path: string,
    /** The blocks, and where each tensor's float32 data starts in the file. */
    readonly blocks: readonly (SpilledBlock & { start: number })[],
    readonly kept: { diagonal: Float64Array },
  ) {
    super(info, layout);
  }

  /** Opens a loaded file's blocks (float32 each), reading its diagonal. */
  static async open(file: FisherFile, blocks: readonly SpilledBlock[]): Promise<StoredFisher> {
    const placed = blocks.map((b) => ({ ...b, start: file.dataStart(b.tensor, [b.size, b.size], 'F32') }));
    const diagonal = new Float64Array(file.layout.total);
    const fd = openSync(file.path, 'r');
    try {
      const one = new Float32Array(1);
      for (const b of placed) {
        for (let i = 0; i < b.size; i++) {
          readSync(fd, new Uint8Array(one.buffer), 0, 4, b.start + 4 * (i * b.size + i));
          diagonal[b.offset + i] = one[0]!;
        }
      }
    } finally {
      closeSync(fd);
    }
    return new StoredFisher(file.info, file.layout, file.path, placed, { diagonal });
  }

  #refuse(what: string): never {
    throw new RangeError(`this ${this.info.structure} Fisher of P = ${this.size} lives in ${this.path}, not in memory: ${what}`);
  }

  /** Calls `f(block, row, values)` for every row of every block, read a slice of rows (about 64 MiB) at a time. */
  #eachRow(f: (block: SpilledBlock, row: number, values: Float32Array) => void): void {
    const fd = openSync(this.path, 'r');
    try {
      for (const b of this.blocks) {
        const rows = Math.max(1, Math.floor(2 ** 24 / b.size));
        for (let r0 = 0; r0 < b.size; r0 += rows) {
          const count = Math.min(rows, b.size - r0);
          const slice = new Float32Array(count * b.size);
          readSync(fd, new Uint8Array(slice.buffer), 0, slice.byteLength, b.start + 4 * r0 * b.size);
          for (let r = 0; r < count; r++) f(b, r0 + r, slice.subarray(r * b.size, (r + 1) * b.size));
        }
      }
    } finally {
      closeSync(fd);
    }
  }

  denseBlocks(): DenseBlock[] {
    return this.blocks.map((b) => ({
      name: b.tensor,
      offset: b.offset,
      size: b.size,
      rows: (row0: number, count: number) => {
        const slice = new Float32Array(count * b.size);
        const fd = openSync(this.path, 'r');
        try {
          readSync(fd, new Uint8Array(slice.buffer), 0, slice.byteLength, b.start + 4 * row0 * b.size);
        } finally {
          closeSync(fd);
        }
        return slice;
      },
    }));
  }

  diagonal(): Float64Array {
    return this.kept.diagonal.slice();
  }

  mv(v: ArrayLike<number>): Float64Array {
    checkLength(v, this.size, 'v');
    const out = new Float64Array(this.size);
    this.#eachRow((b, row, values) => {
      let s = 0;
      for (let c = 0; c < b.size; c++) s += values[c]! * v[b.offset + c]!;
      out[b.offset + row] = s;
    });
    return out;
  }

  frobeniusNorm(): number {
    let s = 0;
    this.#eachRow((_b, _row, values) => {
      for (let c = 0; c < values.length; c++) s += values[c]! ** 2;
    });
    return Math.sqrt(s);
  }

  protected exactSolve(): never {
    this.#refuse('a dense Cholesky factorisation of it does not fit; solve with method "cg" (each iteration one pass over the file)');
  }

  logdet(): number {
    this.#refuse('its log-determinant needs a dense factorisation that does not fit');
  }

  scale(): StoredFisher {
    this.#refuse('scaling it would rewrite the file; scale the vectors you multiply instead');
  }

  tensors(): Map<string, Tensor> {
    this.#refuse('read it from the file by slices');
  }

  /** Copies the file (nothing to do where it is already). */
  override async save(path: string, options: { dtype?: FileDtype } = {}): Promise<void> {
    if ((options.dtype ?? 'F32') !== 'F32') throw new RangeError('a Fisher written tile by tile is float32');
    if (resolve(path) !== resolve(this.path)) await copyFile(this.path, path);
  }
}

/** The run that writes `blocks` of F into `path`, `entries` floats of F at a time on the host. */
export function spillRun(model: Network, info: FisherInfo, path: string, blocks: readonly SpilledBlock[], entries: number): StructureRun {
  const passes = spillPasses(blocks, entries);
  const diagonal = new Float64Array(model.parameterCount);
  const scale = kindScale(info);
  let pass = 0;
  const fresh = () => passes[pass]!.map((x) => new CompensatedSum(x.count * blocks[x.block]!.size));
  let sums = fresh();
  let stream: SafetensorsStream | undefined;
  return {
    async add(loaded, batch, labels) {
      const pieces = passes[pass]!;
      const asked: GramBlock[] = pieces.map((x) => ({ offset: blocks[x.block]!.offset, size: blocks[x.block]!.size, rows: { start: x.start, count: x.count } }));
      await loaded.gramSum(batch, (t) => sums[t.block]!.add(t.values, (t.row0 - pieces[t.block]!.start) * blocks[pieces[t.block]!.block]!.size), labels, asked);
    },
    async nextPass() {
      stream ??= await SafetensorsStream.create(
        path,
        blocks.map((b) => [b.tensor, { dtype: 'F32', shape: [b.size, b.size] }]),
        fisherMetadata(info, model.layout),
      );
      try {
        for (const [k, { block, start, count }] of passes[pass]!.entries()) {
          const { tensor, offset, size } = blocks[block]!;
          const values = sums[k]!.result(scale);
          const tile = new Float32Array(count * size);
          for (let r = 0; r < count; r++) {
            // The upper triangle from this pass; within the piece, the lower part by symmetry.
            for (let c = start + r; c < size; c++) tile[r * size + c] = values[r * size + c]!;
            for (let c = start; c < start + r; c++) tile[r * size + c] = values[(c - start) * size + start + r]!;
            diagonal[offset + start + r] = values[r * size + start + r]!;
          }
          // Columns before the piece: row c < start of this block was written with F[c, start : start + count].
          for (let c = 0; c < start; c++) {
            const column = await stream.read(tensor, c * size + start, count);
            for (let r = 0; r < count; r++) tile[r * size + c] = column[r]!;
          }
          await stream.write(tensor, tile, start * size);
        }
      } catch (e) {
        await stream.abort();
        stream = undefined;
        throw e;
      }
      pass++;
      if (pass >= passes.length) return false;
      sums = fresh();
      return true;
    },
    async result(info) {
      await stream!.finish();
      return new StoredFisher(info, model.layout, path, blocks.map((b) => ({ ...b, start: stream!.dataStart(b.tensor) })), { diagonal });
    },
    async abort() {
      await stream?.abort();
    },
  };
}
