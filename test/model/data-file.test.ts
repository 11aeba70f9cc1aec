/**
 * A data file read a batch at a time (DataFile) against the same file read
 * whole (Dataset.load): the same rows, the same refusals, the same Fisher,
 * and errors in a later batch named by their place in the whole file.
 */
import { mkdtempSync, renameSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import type { Tensor } from '../../src/io/dtypes.js';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { Dataset } from '../../src/model/data.js';
import { DataFile } from '../../src/model/data-file.js';
import { Network } from '../../src/model/network.js';
import { expectClose } from '../helpers/compare.js';
import { mlpSpec, randomData } from '../helpers/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'fisher-data-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** Writes tensors to a new file; returns its path. */
async function write(tensors: Record<string, Tensor>): Promise<string> {
  const path = join(dir, `d${files++}.safetensors`);
  await writeSafetensors(path, Object.entries(tensors));
  return path;
}

const model = Network.random(mlpSpec([3, 4, 2], 'relu', { type: 'categorical' }), 3);
/** 11 samples: x[i, j] = 3i + j, labels i mod 2. */
const n = 11;
const x: Tensor = { dtype: 'F32', shape: [n, 3], data: Float32Array.from({ length: 3 * n }, (_, i) => i) };
const y: Tensor = { dtype: 'I64', shape: [n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 2)) };

describe('DataFile', () => {
  it('reads the rows Dataset.load reads, batch by batch and from a read-ahead', async () => {
    const path = await write({ x, y });
    const whole = await Dataset.load(path, model);
    const file = await DataFile.open(path, model);
    expect([file.n, file.inputs, file.targetWidth]).toEqual([n, 3, 1]);
    const same = async (start: number, end: number) => {
      const got = await file.rows(start, end);
      const ref = whole.slice(start, end);
      expect([got.n, got.inputs, got.targetWidth], `rows [${start}, ${end})`).toEqual([ref.n, 3, 1]);
      expect(Array.from(got.x), `x [${start}, ${end})`).toEqual(Array.from(ref.x));
      expect(Array.from(got.y), `y [${start}, ${end})`).toEqual(Array.from(ref.y));
      return got;
    };
    // Batches of 4 alternate between two buffers: a batch is intact while the next one is read.
    const first = await same(0, 4);
    await same(4, 8);
    expect(Array.from(first.x)).toEqual(Array.from(whole.slice(0, 4).x));
    await same(8, 20); // clamped to n
    await same(11, 11);
    // Read ahead: batches within it are views of its buffer, rows outside are read as usual.
    file.readAhead(2, 9);
    const a = await same(2, 5);
    const b = await same(5, 9);
    expect(a.x.buffer).toBe(b.x.buffer);
    await same(0, 3);
    await same(2, 5); // the read-ahead was dropped at the rows outside it: read again, the same
    // A range that is not the file's rows is a hint ignored, not an error.
    for (const [s, e] of [[-1, 3], [5, 5], [12, 20], [0.5, 2]] as const) expect(() => file.readAhead(s, e)).not.toThrow();
    await same(0, 11);
    await expect(file.rows(5, 4)).rejects.toThrow(RangeError);
  });

  it('has its first read-ahead with the operating system when readAhead returns (before any await)', async () => {
    // The command line reads ahead just before the device's first calls hold the main thread: a read that still
    // needed the main thread to open the file would wait for them. Here the file moves away right after the call:
    // the read-ahead has it open already, a later read does not find it.
    const path = await write({ x, y });
    const whole = await Dataset.load(path, model);
    const file = await DataFile.open(path, model);
    file.readAhead(0, 7);
    renameSync(path, `${path}.moved`);
    expect(Array.from((await file.rows(0, 7)).x)).toEqual(Array.from(whole.slice(0, 7).x));
    await expect(file.rows(7, 11)).rejects.toThrow(/ENOENT/);
  });

  it('returns the right rows when read-aheads and reads overlap in flight', async () => {
    const path = await write({ x, y });
    const whole = await Dataset.load(path, model);
    const file = await DataFile.open(path, model);
    // The first read-ahead's buffer is the third read's (which waits for it: timing alone would rarely show otherwise).
    file.readAhead(0, 11);
    file.readAhead(3, 5);
    const [a, b] = await Promise.all([file.rows(6, 8), file.rows(3, 5)]);
    expect(Array.from(a.x)).toEqual(Array.from(whole.slice(6, 8).x));
    expect(Array.from(b.x)).toEqual(Array.from(whole.slice(3, 5).x));
  });

  const refusals: [string, Record<string, Tensor>, RegExp][] = [
    ['no x', { y }, /missing tensor "x"/],
    ['no y', { x }, /missing tensor "y"/],
    ['the wrong width', { x: { dtype: 'F32', shape: [2, 5], data: new Float32Array(10) }, y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" has shape \[2, 5\], expected \[N, 3\]/],
    ['x in float64', { x: { dtype: 'F64', shape: [2, 3], data: new Float64Array(6) }, y: { dtype: 'I32', shape: [2], data: new Int32Array(2) } }, /"x" is F64, expected F32/],
    ['a label out of range', { x, y: { dtype: 'I64', shape: [n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i === 9 ? 2 : 0)) } }, /index 9: label 2 is not a class in \[0, 2\)/],
    ['float labels', { x, y: { dtype: 'F32', shape: [n], data: new Float32Array(n) } }, /must be I32 or I64/],
    ['labels of the wrong length', { x, y: { dtype: 'I32', shape: [3], data: new Int32Array(3) } }, /expected \[11\]/],
  ];
  for (const [what, tensors, message] of refusals) {
    it(`refuses, when opened, data with ${what}, as Dataset.load does`, async () => {
      const path = await write(tensors);
      await expect(Dataset.load(path, model)).rejects.toThrow(message);
      await expect(DataFile.open(path, model)).rejects.toThrow(message);
    });
  }

  it('names a NaN in x by its index in the whole file, when its batch is read', async () => {
    const bad = Float32Array.from(x.data as Float32Array);
    bad[9 * 3 + 2] = NaN;
    const path = await write({ x: { ...x, data: bad }, y });
    await expect(Dataset.load(path, model)).rejects.toThrow(/"x" holds NaN at index \[9, 2\]/);
    const file = await DataFile.open(path, model);
    await expect(file.rows(0, 8)).resolves.toBeDefined();
    await expect(file.rows(8, 11)).rejects.toThrow(/"x" holds NaN at index \[9, 2\]/);
    file.readAhead(4, 11);
    await expect(file.rows(4, 8)).rejects.toThrow(/"x" holds NaN at index \[9, 2\]/);
    // The estimator stops at it (read while the batch before computes), with nothing left unhandled.
    await expect(fisher(new CpuEngine(), model, await DataFile.open(path, model), { batchSize: 4 })).rejects.toThrow(/"x" holds NaN at index \[9, 2\]/);
  });

  it('reads value targets [N, out] and images [N, C, H, W] as Dataset.load does', async () => {
    const gImages = Network.random({ input: [3, 2, 2], layers: [{ type: 'flatten' }, { type: 'linear', name: 'fc', in: 12, out: 2 }], likelihood: { type: 'gaussian', sigma: 2 } }, 5);
    const images: Tensor = { dtype: 'F32', shape: [3, 3, 2, 2], data: Float32Array.from({ length: 36 }, (_, i) => i / 7) };
    const values: Tensor = { dtype: 'F32', shape: [3, 2], data: Float32Array.of(1, -2, 3, -4, 5, -6) };
    const path = await write({ x: images, y: values });
    const whole = await Dataset.load(path, gImages);
    const rows = await (await DataFile.open(path, gImages)).rows(1, 3);
    expect(Array.from(rows.x)).toEqual(Array.from(whole.slice(1, 3).x));
    expect(Array.from(rows.y)).toEqual([3, -4, 5, -6]);
    const bad = Float32Array.from(images.data as Float32Array);
    bad[2 * 12 + 5] = Infinity;
    const file = await DataFile.open(await write({ x: { ...images, data: bad }, y: values }), gImages);
    await expect(file.rows(2, 3)).rejects.toThrow(/"x" holds Infinity at index \[2, 1, 0, 1\]/);
  });

  it('refuses a file cut short, naming it', async () => {
    const path = await write({ x, y });
    truncateSync(path, 100);
    await expect(DataFile.open(path, model)).rejects.toThrow(path);
  });

  it('gives the Fisher of the data in memory, in batches that do not divide N, sharded with the same run digest', async () => {
    const big = Network.random(mlpSpec([5, 3, 3], 'tanh', { type: 'categorical' }), 8);
    const data = randomData(big, 23, 9);
    const path = await write({ x: { dtype: 'F32', shape: [23, 5], data: data.x }, y: { dtype: 'I32', shape: [23], data: Int32Array.from(data.y) } });
    const cpu = new CpuEngine();
    for (const structure of ['diag', 'kfac'] as const) {
      const ref = await fisher(cpu, big, data, { structure, kind: 'mc', seed: 4, batchSize: 5 });
      const file = await DataFile.open(path, big);
      file.readAhead(0, 7);
      const got = await fisher(cpu, big, file, { structure, kind: 'mc', seed: 4, batchSize: 5 });
      expectClose(got.toDense(), ref.toDense(), { rtol: 0, atol: 0 }, structure);
    }
    const shard = { index: 2, count: 3 };
    const ref = await fisher(cpu, big, data, { shard, batchSize: 3 });
    const got = await fisher(cpu, big, await DataFile.open(path, big), { shard, batchSize: 3 });
    expect(got.info.shard).toEqual(ref.info.shard);
    expectClose(got.toDense(), ref.toDense(), { rtol: 0, atol: 0 }, 'shard');
  });
});
