/** The staging belt: large uploads reuse their staging memory, ordered on the queue as queue.writeBuffer. */
import { describe, expect, it } from 'vitest';
import { DeviceLostError } from '../../src/gpu/errors.js';
import { openDevice } from '../../src/gpu/device.js';
import { StagingBelt } from '../../src/gpu/staging.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

/** n floats, different for each `seed`. */
const values = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * (seed + 1));

describe('staging belt', () => {
  it('uploads exactly, and reuses one staging buffer for uploads of the same size', async () => {
    const d = gpu();
    const belt = new StagingBelt(d.device);
    const n = 30_001;
    const buf = await d.storage(n * 4, 'target');
    try {
      for (let seed = 0; seed < 4; seed++) {
        const data = values(n, seed);
        await belt.upload(buf, 0, data);
        expect(await d.readF32(buf, n * 4)).toEqual(data);
      }
      // A smaller upload fits the same buffer; at an offset, into part of the target.
      const part = values(1000, 9);
      await belt.upload(buf, 4 * 4, part);
      expect((await d.readF32(buf, part.byteLength, 4 * 4))).toEqual(part);
      expect(belt.created).toBe(1);
    } finally {
      belt.destroy();
      d.buffers.release(buf);
    }
  });

  it('orders each upload after the work submitted before it and before the work after it', async () => {
    const d = gpu();
    const belt = new StagingBelt(d.device);
    const n = 40_000;
    const x = await d.storage(n * 4, 'x');
    const copies = [await d.storage(n * 4, 'copy 0'), await d.storage(n * 4, 'copy 1'), await d.storage(n * 4, 'copy 2')];
    try {
      // Three rounds without waiting for the device: upload into x, then copy x away.
      // Each upload must land after the copy before it has read x, and before the copy after it.
      for (const [round, copy] of copies.entries()) {
        await belt.upload(x, 0, values(n, round));
        const encoder = d.device.createCommandEncoder();
        encoder.copyBufferToBuffer(x, 0, copy, 0, n * 4);
        d.device.queue.submit([encoder.finish()]);
      }
      for (const [round, copy] of copies.entries()) expect(await d.readF32(copy, n * 4)).toEqual(values(n, round));
      expect(belt.created).toBe(1);
    } finally {
      belt.destroy();
      for (const b of [x, ...copies]) d.buffers.release(b);
    }
  });

  it('holds a buffer for a larger size only where none fits, and refuses bad sizes', async () => {
    const d = gpu();
    const belt = new StagingBelt(d.device);
    const big = await d.storage(20_000 * 4, 'big');
    try {
      // Growing sizes: a new buffer for the larger; after that both sizes reuse what is held.
      for (let round = 0; round < 3; round++) {
        await belt.upload(big, 0, values(5_000, round));
        await belt.upload(big, 0, values(20_000, round));
        await belt.upload(big, 0, values(5_000, round));
      }
      expect(belt.created).toBe(2);
      const last = values(20_000, 2);
      last.set(values(5_000, 2));
      expect(await d.readF32(big, 80_000)).toEqual(last);
      await expect(belt.upload(big, 0, new Uint8Array(6))).rejects.toThrow(/both must be multiples of 4/);
      await expect(belt.upload(big, 2, new Float32Array(4))).rejects.toThrow(/both must be multiples of 4/);
    } finally {
      belt.destroy();
      d.buffers.release(big);
    }
    await expect(belt.upload(big, 0, values(4, 0))).rejects.toThrow(/destroyed/);
  });

  it('serves GpuDevice.upload (over a mebibyte; smaller ones go through writeBuffer), which fails like any use of a disposed device', async () => {
    const d = await openDevice();
    const buf = await d.storage(300_000 * 4, 'buf');
    const data = values(300_000, 3);
    await d.upload(buf, data);
    expect(await d.readF32(buf, data.byteLength)).toEqual(data);
    const small = values(10, 4);
    await d.upload(buf, small, 8);
    expect(await d.readF32(buf, small.byteLength, 8)).toEqual(small);
    d.dispose();
    await expect(d.upload(buf, data)).rejects.toThrow(DeviceLostError);
  });
});
