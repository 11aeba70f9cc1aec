/**
 * Fisher matrices from per-sample gradients a caller already has (from
 * PyTorch's functorch, JAX's vmap, or any other tool): a stream of [n, P]
 * row-major chunks g_n, accumulated in float64 on the host as
 *
 *   diag     F_ii = c Σ_n g_{n,i}²
 *   full     F = c Σ_n g_n g_nᵀ
 *   block    the diagonal blocks of full, of the sizes given
 *   lowrank  the top-k eigenpairs by the subspace iteration of `lowrank`,
 *            one pass over the chunks per iteration (the source must give
 *            them again: an array, or a function returning a fresh stream)
 *
 * with c = 1/N (mean) or 1 (sum). Chunks may also be float32 GPU buffers
 * (`{ buffer, rows }`, with `device` in the options): full and block then
 * form each chunk's Gram tiles on the device (the O(n·P_l²) work) and add
 * them on the host in float64; diag and lowrank, whose work per chunk is
 * about what reading it costs, read the chunk back once. The result is the
 * same object `fisher()` returns (kind empirical: the gradients are taken
 * as given), with all its operations and its file.
 */
import type { GpuDevice } from '../gpu/device.js';
import { Matmul } from '../kernels/matmul.js';
import { matmulShapesFor } from '../engine/tuning.js';
import { InputError } from '../layers/errors.js';
import { tensorLayout, type TensorLayout } from '../model/layout.js';
import { CompensatedSum } from './accumulator.js';
import type { Reduction } from './options.js';
import type { FisherInfo, FisherMatrix } from './result.js';
import { mirrorUpper } from './structures/structure.js';
import { DiagonalFisher } from './structures/diag.js';
import { DenseFisher, MAX_DENSE_ENTRIES } from './structures/full.js';
import { BlockFisher } from './structures/block.js';
import { SubspaceIteration } from './structures/lowrank.js';

/** Per-sample gradients on the device: `rows` rows of P float32 values, row-major from the buffer's start (STORAGE and COPY_SRC usage). */
export interface DeviceGradientChunk {
  buffer: GPUBuffer;
  rows: number;
}
/** One chunk of per-sample gradients: n rows of P, row-major, on the host or the device. */
export type GradientChunk = Float32Array | Float64Array | DeviceGradientChunk;
type Stream = Iterable<GradientChunk> | AsyncIterable<GradientChunk>;
/** The chunks, or a function giving them afresh (needed by lowrank, which reads them once per pass). */
export type GradientSource = Stream | (() => Stream);

export interface GradientOptions {
  structure: 'diag' | 'full' | 'block' | 'lowrank';
  /** Names and shapes of the P columns, in order (default: one tensor "theta" [P]); block's default blocks are its layers. */
  layout?: TensorLayout;
  /** block: the sizes of the diagonal blocks, in order, summing to P (default: the layout's layers). */
  blocks?: readonly number[];
  /** Default 'mean'. */
  reduction?: Reduction;
  /** lowrank: eigenpairs (default 64), most passes (default 30), the seed of the start basis. */
  rank?: number;
  passes?: number;
  seed?: number;
  /** The device that holds chunks given as GPU buffers. */
  device?: GpuDevice;
}

/** The layout with its layers cut at `blocks` (each block one layer of the result). */
function blockLayout(layout: TensorLayout, blocks: readonly number[]): TensorLayout {
  if (blocks.some((b) => !Number.isSafeInteger(b) || b < 1)) throw new InputError(`block sizes must be positive integers, got ${blocks.join(', ')}`);
  const total = blocks.reduce((s, b) => s + b, 0);
  if (total !== layout.total) throw new InputError(`block sizes sum to ${total}, not P = ${layout.total}`);
  let offset = 0;
  const layers = blocks.map((size, k) => {
    const l = { name: `block${k}`, offset, size };
    offset += size;
    return l;
  });
  return { ...layout, layers };
}

const isDeviceChunk = (c: GradientChunk): c is DeviceGradientChunk => !ArrayBuffer.isView(c);

function checkFinite(values: ArrayLike<number>, p: number): void {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) throw new InputError(`a gradient chunk holds ${values[i]} at row ${Math.floor(i / p)}, column ${i % p}`);
}

/** The chunks with their row counts; device chunks stay on the device where `keepDevice`, else are read back once. */
async function* rows(source: Stream, p: number, device: GpuDevice | undefined, keepDevice: boolean): AsyncGenerator<{ chunk: GradientChunk; n: number }> {
  for await (const chunk of source) {
    if (isDeviceChunk(chunk)) {
      if (!device) throw new InputError('a gradient chunk is a GPU buffer: pass the device that holds it (options.device)');
      if (!Number.isSafeInteger(chunk.rows) || chunk.rows < 0) throw new InputError(`a device gradient chunk has rows = ${chunk.rows}`);
      if (chunk.buffer.size < 4 * chunk.rows * p) throw new InputError(`a device gradient chunk of ${chunk.rows} rows needs ${4 * chunk.rows * p} bytes; its buffer has ${chunk.buffer.size}`);
      if (keepDevice) {
        yield { chunk, n: chunk.rows };
        continue;
      }
      const values = await device.readF32(chunk.buffer, 4 * chunk.rows * p);
      checkFinite(values, p);
      yield { chunk: values, n: chunk.rows };
      continue;
    }
    if (chunk.length % p !== 0) throw new InputError(`a gradient chunk has ${chunk.length} values, not a multiple of P = ${p}`);
    checkFinite(chunk, p);
    yield { chunk, n: chunk.length / p };
  }
}

/**
 * The upper triangle of the chunk's Gram block Σ_n g_n[a] g_n[b] (a ≤ b in
 * [offset, offset + size)), formed on the device a tile of rows at a time
 * (float32 over the chunk's rows), added to `into` in float64.
 */
async function deviceGramInto(matmul: Matmul, chunk: DeviceGradientChunk, p: number, offset: number, size: number, into: CompensatedSum): Promise<void> {
  const gpu = matmul.gpu;
  const tileRows = Math.max(1, Math.min(size, Math.floor(Math.min(gpu.limits.maxStorageBufferBindingSize, 2 ** 26) / (4 * size))));
  const out = await gpu.storage(4 * tileRows * size, 'gradient Gram tile');
  try {
    const part = new Float64Array(size * size);
    for (let row0 = 0; row0 < size; row0 += tileRows) {
      const count = Math.min(tileRows, size - row0);
      await gpu.step('gradient Gram tile', (step) => matmul.gram(step, { g: chunk.buffer, out, batch: chunk.rows, ld: p, offset, size, row0, rows: count }));
      const tile = await gpu.readF32(out, 4 * count * size);
      for (let r = 0; r < count; r++) {
        const a = row0 + r;
        for (let b = a; b < size; b++) {
          const v = tile[r * size + b]!;
          // A non-finite gradient makes its row's and column's sums non-finite: name the column.
          if (!Number.isFinite(v)) throw new InputError(`a gradient chunk on the device holds a non-finite value in column ${offset + (Number.isFinite(tile[r * size + a]!) ? b : a)}`);
          part[a * size + b] = v;
        }
      }
    }
    into.add(part);
  } finally {
    gpu.buffers.release(out);
  }
}

/** Σ_n g_n[a] g_n[b] for a ≤ b in [offset, offset + size), rows of a chunk: the upper triangle of the block. */
function gramInto(chunk: Float32Array | Float64Array, n: number, p: number, offset: number, size: number, into: CompensatedSum): void {
  const part = new Float64Array(size * size);
  for (let s = 0; s < n; s++) {
    const row = chunk.subarray(s * p + offset, s * p + offset + size);
    for (let a = 0; a < size; a++) {
      const x = row[a]!;
      if (x === 0) continue;
      const at = a * size;
      for (let b = a; b < size; b++) part[at + b]! += x * row[b]!;
    }
  }
  into.add(part);
}

/** The Fisher of per-sample gradients (see the module's comment). */
export async function fromGradients(source: GradientSource, p: number, options: GradientOptions): Promise<FisherMatrix> {
  if (!Number.isSafeInteger(p) || p < 1) throw new InputError(`P must be a positive integer, got ${p}`);
  const layout = options.layout ?? tensorLayout([{ name: 'theta', shape: [p] }]);
  if (layout.total !== p) throw new InputError(`the layout has ${layout.total} parameters, the gradients P = ${p}`);
  const reduction = options.reduction ?? 'mean';
  const stream = (): Stream => (typeof source === 'function' ? source() : source);
  const hostRows = (s: Stream) => rows(s, p, options.device, false) as AsyncGenerator<{ chunk: Float32Array | Float64Array; n: number }>;
  const info = (n: number, onDevice = false): FisherInfo => ({ kind: 'empirical', structure: options.structure, reduction, n, samples: 1, seed: undefined, backend: onDevice ? 'gradients (device Gram tiles, host float64 sums)' : 'gradients (host, float64)' });
  const scaleOf = (n: number) => {
    if (n === 0) throw new InputError('no gradients: the source gave no rows');
    return reduction === 'mean' ? 1 / n : 1;
  };
  switch (options.structure) {
    case 'diag': {
      const acc = new CompensatedSum(p);
      let n = 0;
      for await (const { chunk, n: m } of hostRows(stream())) {
        const part = new Float64Array(p);
        for (let s = 0; s < m; s++) for (let i = 0; i < p; i++) part[i]! += chunk[s * p + i]! ** 2;
        acc.add(part);
        n += m;
      }
      return new DiagonalFisher(info(n), layout, acc.result(scaleOf(n)));
    }
    case 'full':
    case 'block': {
      const blocked = options.structure === 'full' ? { ...layout, layers: [{ name: 'fisher', offset: 0, size: p }] } : options.blocks ? blockLayout(layout, options.blocks) : layout;
      const entries = blocked.layers.reduce((s, l) => s + l.size * l.size, 0);
      if (entries > MAX_DENSE_ENTRIES) throw new InputError(`the ${options.structure} Fisher of these gradients has ${entries.toExponential(2)} entries, more than the ${MAX_DENSE_ENTRIES.toExponential(1)} held in memory; use diag or lowrank`);
      const sums = blocked.layers.map((l) => new CompensatedSum(l.size * l.size));
      let n = 0;
      let matmul: Matmul | undefined;
      for await (const { chunk, n: m } of rows(stream(), p, options.device, true)) {
        if (isDeviceChunk(chunk)) {
          matmul ??= await Matmul.create(options.device!, matmulShapesFor(options.device!));
          for (const [k, l] of blocked.layers.entries()) await deviceGramInto(matmul, chunk, p, l.offset, l.size, sums[k]!);
        } else blocked.layers.forEach((l, k) => gramInto(chunk, m, p, l.offset, l.size, sums[k]!));
        n += m;
      }
      const values = sums.map((s, k) => {
        const v = s.result(scaleOf(n));
        mirrorUpper(v, blocked.layers[k]!.size);
        return v;
      });
      if (options.structure === 'full') return new DenseFisher(info(n, matmul !== undefined), layout, values[0]!);
      return new BlockFisher(info(n, matmul !== undefined), blocked, values);
    }
    case 'lowrank': {
      const k = options.rank ?? 64;
      if (!Number.isSafeInteger(k) || k < 1 || k > p) throw new InputError(`rank must be a whole number from 1 to P = ${p}, got ${k}`);
      const iteration = new SubspaceIteration(p, k, options.passes ?? 30, options.seed ?? 0x5eed);
      let n = 0;
      for (let pass = 0; ; pass++) {
        const q = iteration.basis;
        const w = iteration.width;
        let seen = 0;
        for await (const { chunk, n: m } of hostRows(stream())) {
          // Y += Σ_s (g_s · q_j) g_s, row j of Y for each basis row q_j.
          const y = new Float64Array(w * p);
          for (let s = 0; s < m; s++) {
            const g = chunk.subarray(s * p, (s + 1) * p);
            for (let j = 0; j < w; j++) {
              const qj = q.subarray(j * p, (j + 1) * p);
              let d = 0;
              for (let i = 0; i < p; i++) d += g[i]! * qj[i]!;
              if (d === 0) continue;
              const yj = y.subarray(j * p, (j + 1) * p);
              for (let i = 0; i < p; i++) yj[i]! += d * g[i]!;
            }
          }
          iteration.add(y);
          seen += m;
        }
        if (pass === 0) n = seen;
        else if (seen !== n) throw new InputError(`pass ${pass + 1} over the gradients gave ${seen} rows, the first ${n}: lowrank reads them once per pass, so give an array of chunks or a function returning a fresh stream`);
        if (!iteration.nextPass(n)) break;
      }
      return iteration.result(info(n), layout, scaleOf(n));
    }
    default:
      throw new InputError(`fromGradients computes diag, full, block and lowrank; not "${String((options as { structure: unknown }).structure)}"`);
  }
}
