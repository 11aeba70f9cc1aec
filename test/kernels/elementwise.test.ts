/** elementwise.wgsl: the running total (compensated_add), the column sums (column_reduce) and the transpose against plain loops. */
import { describe, expect, it } from 'vitest';
import { Elementwise } from '../../src/kernels/elementwise.js';
import { Rng } from '../../src/model/random.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

/** Adds each [samples, count] block of `blocks` into a zeroed total on the device, one step each; returns sum and compensation. */
async function total(count: number, blocks: Float32Array[], samples: number): Promise<{ sum: Float32Array; compensation: Float32Array }> {
  const kernel = new Elementwise(gpu());
  const zero = new Float32Array(count);
  const [sum, compensation] = [await gpu().storage(count * 4, 'sum', zero), await gpu().storage(count * 4, 'compensation', zero)];
  const rows = await gpu().storage(samples * count * 4, 'rows');
  for (const block of blocks) {
    gpu().write(rows, block);
    await gpu().step('add', (s) => kernel.compensatedAdd(s, { rows, sum, compensation, count, samples }));
  }
  const out = { sum: await gpu().readF32(sum, count * 4), compensation: await gpu().readF32(compensation, count * 4) };
  for (const b of [sum, compensation, rows]) gpu().buffers.release(b);
  return out;
}

describe('compensated_add: a running total on the device', () => {
  it('keeps what float32 additions round away: 2^25 then 3000 ones is 2^25 + 3000 exactly', async () => {
    // At 2^25 float32 steps by 4, so every +1 rounds away in a plain float32 sum.
    // 31 batches of 100 rows of 5 columns: the first holds 2^25 in column 0 and zeros; the other 30, ones.
    const first = new Float32Array(100 * 5);
    first[0] = 2 ** 25;
    const blocks = [first, ...Array.from({ length: 30 }, () => new Float32Array(100 * 5).fill(1))];
    const { sum, compensation } = await total(5, blocks, 100);
    expect(sum[0]).toBe(2 ** 25); // the plain float32 sum lost the ones
    expect(sum[0]! + compensation[0]!).toBe(2 ** 25 + 3000);
    expect(Array.from(sum.subarray(1), (s, j) => s + compensation[j + 1]!)).toEqual([3000, 3000, 3000, 3000]);
  });

  it('over many batches of positive values of mixed scale, matches the float64 sum to float32 rounding of the total', async () => {
    const count = 37;
    const samples = 3;
    const rng = new Rng(5);
    const blocks = Array.from({ length: 40 }, (_, b) => Float32Array.from(rng.normals(samples * count), (v) => v * v * 10 ** ((b % 7) - 3)));
    const exact = new Float64Array(count);
    for (const block of blocks) for (let k = 0; k < block.length; k++) exact[k % count]! += block[k]!;
    const { sum, compensation } = await total(count, blocks, samples);
    for (let j = 0; j < count; j++) {
      const got = sum[j]! + compensation[j]!;
      expect(Math.abs(got - exact[j]!)).toBeLessThanOrEqual(2 ** -23 * exact[j]!);
    }
  });
});

// Per-sample rows summed over the samples: columns [0, columns) of rows of stride ld, squared or
// not, scaled, from an offset; with `slices`, in parts of ⌈samples / slices⌉ rows whose sums lie
// one after the other (the last part shorter or empty), for the caller to add in float64.
describe('column_reduce: sums of columns over rows', () => {
  it.each([
    [10, 5, 7, 1, false],
    [10, 5, 7, 3, true],
    [9, 3, 3, 4, false],
    [4100, 26, 26, 2, false],
  ] as const)('%i rows, %i of %i columns, %i slices, squared %s', async (samples, columns, ld, slices, square) => {
    const kernel = new Elementwise(gpu());
    const rows = new Rng(samples + columns + slices).normals(samples * ld);
    const [offset, scale] = [3, 0.5];
    const size = offset + slices * columns + 2;
    const [bx, by] = [await gpu().storage(rows.byteLength, 'rows', rows), await gpu().storage(size * 4, 'sums', new Float32Array(size).fill(NaN))];
    await gpu().step('reduce', (s) => kernel.columnReduce(s, { rows: bx, out: by, columns, samples, ld, offset, scale, square, slices }));
    const got = await gpu().readF32(by, size * 4);
    const per = Math.ceil(samples / slices);
    for (let z = 0; z < slices; z++) {
      for (let j = 0; j < columns; j++) {
        let want = 0;
        for (let s = z * per; s < Math.min(samples, (z + 1) * per); s++) want += square ? rows[s * ld + j]! ** 2 : rows[s * ld + j]!;
        expect(got[offset + z * columns + j]).toBeCloseTo(scale * want, 3);
      }
    }
    expect([got[offset - 1], got[offset + slices * columns]].every(Number.isNaN)).toBe(true);
    gpu().buffers.release(bx);
    gpu().buffers.release(by);
  });
});

// Each sample's [rows, cols] matrix transposed into y from an offset (K-FAC's δ rows from a
// channel-major output; rows = 1 is a copy); what lies outside stays NaN.
describe('transpose', () => {
  it.each([
    [3, 5, 7],
    [2, 1, 9],
    [4, 16, 1],
  ] as const)('%i samples of [%i, %i]', async (batch, rows, cols) => {
    const kernel = new Elementwise(gpu());
    const x = new Rng(batch * rows * cols).normals(batch * rows * cols);
    const offset = 2;
    const size = offset + x.length + 3;
    const [bx, by] = [await gpu().storage(x.byteLength, 'x', x), await gpu().storage(size * 4, 'y', new Float32Array(size).fill(NaN))];
    await gpu().step('transpose', (s) => kernel.transpose(s, { x: bx, y: by, batch, rows, cols, offset }));
    const got = await gpu().readF32(by, size * 4);
    const want = new Float32Array(size).fill(NaN);
    for (let s = 0; s < batch; s++) for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) want[offset + (s * cols + j) * rows + i] = x[(s * rows + i) * cols + j]!;
    expect(Array.from(got)).toEqual(Array.from(want));
    gpu().buffers.release(bx);
    gpu().buffers.release(by);
  });
});
