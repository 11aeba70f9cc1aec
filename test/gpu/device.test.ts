/** The GPU runtime: buffers and their accounting, errors, disposal, reflection. */
import { describe, expect, it } from 'vitest';
import { openDevice } from '../../src/gpu/device.js';
import { DeviceLostError, GpuLimitError, GpuValidationError, ShaderError } from '../../src/gpu/errors.js';
import { entryInfo, packUniform, u32Constant } from '../../src/gpu/reflect.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

describe('GPU runtime', () => {
  it('asks the adapter for its maximum binding and buffer sizes', () => {
    const d = gpu();
    expect(d.limits.maxStorageBufferBindingSize).toBe(d.adapter.limits['maxStorageBufferBindingSize']);
    expect(d.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 2 ** 20);
    expect(d.describe().length).toBeGreaterThan(0);
  });

  it('pools buffers and accounts the bytes it holds, current and peak', async () => {
    const d = gpu();
    const before = d.buffers.stats();
    const a = await d.storage(1000, 'a');
    const b = await d.storage(4096, 'b');
    expect(d.buffers.stats().current - before.current).toBe(1008 + 4096);
    d.buffers.release(a);
    const again = await d.storage(1000, 'a again');
    expect(again).toBe(a);
    d.buffers.release(again);
    d.buffers.release(b);
    d.buffers.trim();
    const after = d.buffers.stats();
    expect(after.current).toBe(before.current);
    expect(after.peak).toBeGreaterThanOrEqual(before.current + 1008 + 4096);
  });

  it('zeroes a pooled buffer on the device, even one that held data', async () => {
    const d = gpu();
    const dirty = await d.storage(4000, 'dirty', new Float32Array(1000).fill(7));
    d.buffers.release(dirty);
    const z = await d.zeros(4000, 'zeros');
    expect(z).toBe(dirty);
    expect(Array.from(await d.readF32(z, 4000)).every((v) => v === 0)).toBe(true);
    d.buffers.release(z);
  });

  it('round-trips data through a buffer', async () => {
    const data = Float32Array.from({ length: 37 }, (_, i) => i * 0.5 - 3);
    const buf = await gpu().storage(data.byteLength, 'rt', data);
    expect(Array.from(await gpu().readF32(buf, data.byteLength))).toEqual(Array.from(data));
    gpu().buffers.release(buf);
  });

  it('reads timestamps at full resolution: Dawn would round them to multiples of 65,536 ns', async (ctx) => {
    const device = gpu().device;
    if (!device.features.has('timestamp-query')) ctx.skip('this adapter has no timestamp queries');
    const queries = 16;
    const set = device.createQuerySet({ type: 'timestamp', count: queries });
    const encoder = device.createCommandEncoder();
    // Empty passes: only their timestamps.
    for (let k = 0; k < queries / 2; k++) encoder.beginComputePass({ timestampWrites: { querySet: set, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 } }).end();
    const resolved = device.createBuffer({ size: queries * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: queries * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    encoder.resolveQuerySet(set, 0, queries, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, read, 0, queries * 8);
    device.queue.submit([encoder.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const stamps = Array.from(new BigUint64Array(read.getMappedRange().slice(0)));
    for (const b of [read, resolved]) b.destroy();
    set.destroy();
    // Quantized, every one is a multiple of 2^16; at full resolution, 16 of them all are with probability 2^-256.
    expect(stamps.filter((t) => t % 65536n !== 0n).length).toBeGreaterThan(0);
  });

  it('refuses a buffer larger than one storage binding', async () => {
    await expect(gpu().storage(gpu().limits.maxStorageBufferBindingSize + 4, 'huge')).rejects.toThrow(GpuLimitError);
  });

  it('encodes a step again once the pipelines it waited for are built, and submits only that attempt', async () => {
    const d = gpu();
    const source = '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn main() { out[0] = out[0] + 1.0; }';
    const out = await d.storage(4, 'out', Float32Array.of(0));
    let built: Awaited<ReturnType<typeof d.kernel>> | undefined;
    let attempts = 0;
    await d.step('lazy', (step) => {
      attempts++;
      if (!built) {
        step.awaitBuild(d.kernel({ family: 'lazy', source, entry: 'main' }).then((k) => (built = k)));
        return;
      }
      built.encode(step, { out }, {}, [1]);
    });
    expect(attempts).toBe(2);
    // Incremented once: the first attempt was dropped, not submitted.
    expect(Array.from(await d.readF32(out, 4))).toEqual([1]);
    // A build that fails fails the step with the build's error.
    await expect(d.step('broken build', (step) => step.awaitBuild(d.kernel({ family: 'broken', source: 'fn x(', entry: 'main' })))).rejects.toThrow(ShaderError);
    d.buffers.release(out);
  });

  it('times the passes by kernel: a pass per dispatch, a dropped attempt not counted, past one query set of 2,048 passes', async (ctx) => {
    const d = gpu();
    if (!d.canTime) ctx.skip('this adapter has no timestamp queries');
    const source = '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn add() { out[0] = out[0] + 1.0; }\n@compute @workgroup_size(1) fn twice() { out[1] = 2.0 * out[1] + 1.0; }';
    const out = await d.storage(8, 'out', Float32Array.of(0, 0));
    const add = await d.kernel({ family: 'timed', source, entry: 'add' });
    let twice: Awaited<ReturnType<typeof d.kernel>> | undefined;
    const steps = 1100;
    const { gpuSeconds, kernels } = await d.timed(
      async () => {
        // The first attempt of the first step encodes `add`, then waits for `twice`: dropped.
        await d.step('both', (step) => {
          add.encode(step, { out }, {}, [1]);
          if (!twice) return step.awaitBuild(d.kernel({ family: 'timed', source, entry: 'twice' }).then((k) => (twice = k)));
          twice.encode(step, { out }, {}, [1]);
        });
        for (let i = 1; i < steps; i++) await d.step('both', (step) => (add.encode(step, { out }, {}, [1]), twice!.encode(step, { out }, {}, [1])));
      },
      { byKernel: true },
    );
    expect(Array.from(await d.readF32(out, 8))[0]).toBe(steps);
    expect(kernels!.map((k) => [k.label, k.passes]).sort()).toEqual([
      ['timed.add', steps],
      ['timed.twice', steps],
    ]);
    expect(kernels!.every((k) => k.seconds > 0)).toBe(true);
    expect(kernels!.reduce((s, k) => s + k.seconds, 0)).toBeCloseTo(gpuSeconds!, 9);
    // Without byKernel: one pass per step, no kernels.
    const plain = await d.timed(() => d.step('one', (step) => add.encode(step, { out }, {}, [1])));
    expect(plain.kernels).toBeUndefined();
    expect(plain.gpuSeconds).toBeGreaterThan(0);
    d.buffers.release(out);
  });

  it('reports WGSL that does not compile as a ShaderError with the line', async () => {
    await expect(gpu().kernel({ family: 'broken', source: '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }', entry: 'main' })).rejects.toThrow(ShaderError);
    await expect(gpu().kernel({ family: 'broken', source: '@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }', entry: 'main' })).rejects.toThrow(/broken: WGSL does not compile: 1:/);
  });

  it('binds by the names the WGSL declares: an unknown override or binding, or a missing one, is named', async () => {
    // Only the bindings `main` uses are in its layout (Dawn's, which the reflection's list must match).
    const source = [
      '@group(0) @binding(0) var<storage, read_write> out: array<f32>;',
      '@group(0) @binding(1) var<storage, read> unused: array<f32>;',
      'override N: u32 = 1u;',
      '@compute @workgroup_size(1) fn main() { out[0] = f32(N); }',
      '@compute @workgroup_size(1) fn other() { out[0] = unused[0]; }',
    ].join('\n');
    await expect(gpu().kernel({ family: 'names', source, entry: 'main', overrides: { M: 2 } })).rejects.toThrow(/names: the WGSL declares no override "M"/);
    const k = await gpu().kernel({ family: 'names', source, entry: 'main', overrides: { N: 3 } });
    expect(k.info.bindings.map((b) => b.name)).toEqual(['out']);
    const out = await gpu().storage(4, 'out', Float32Array.of(0));
    await gpu().step('names', (step) => k.encode(step, { out }, {}, [1]));
    expect(Array.from(await gpu().readF32(out, 4))).toEqual([3]);
    await expect(gpu().step('names', (step) => k.encode(step, {}, {}, [1]))).rejects.toThrow(/names.main: no buffer for binding "out"/);
    await expect(gpu().step('names', (step) => k.encode(step, { out, unused: out }, {}, [1]))).rejects.toThrow(/names.main: the shader has no binding named unused/);
    gpu().buffers.release(out);
  });

  it('a GPU error outside any step fails the next use of the device, typed', async () => {
    const own = await openDevice();
    try {
      // MAP_READ may only go with COPY_DST: an invalid buffer, created outside any error scope.
      own.device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE, label: 'invalid' });
      await expect(own.finish()).rejects.toThrow(GpuValidationError);
      await expect(own.storage(16, 'after')).rejects.toThrow(/a GPU error outside any step: .*invalid/);
    } finally {
      own.dispose();
    }
  });

  it('after dispose, every call fails with DeviceLostError instead of hanging', async () => {
    const d = await openDevice();
    const buf = await d.storage(16, 'x');
    d.dispose();
    d.dispose();
    await expect(d.readF32(buf, 16)).rejects.toThrow(DeviceLostError);
    await expect(d.storage(16, 'y')).rejects.toThrow(DeviceLostError);
    await expect(d.step('s', () => undefined)).rejects.toThrow(DeviceLostError);
  });
});

describe('reflection', () => {
  const src = `
    const ACT_ODD: u32 = 7u;
    struct Dims { n: u32, scale: f32, shift: i32 }
    @group(0) @binding(0) var<uniform> dims: Dims;
    @group(0) @binding(2) var<storage, read_write> out: array<f32>;
    @group(0) @binding(1) var<storage, read> inp: array<f32>;
    @compute @workgroup_size(1) fn main() { out[0] = inp[0] * dims.scale + f32(dims.n) + f32(dims.shift); }`;

  it('reads bindings sorted by index, with their kinds, and the uniform layout', async () => {
    const info = await entryInfo(src, 'main');
    expect(info.bindings).toEqual([
      { name: 'dims', binding: 0, kind: 'uniform' },
      { name: 'inp', binding: 1, kind: 'read-only-storage' },
      { name: 'out', binding: 2, kind: 'storage' },
    ]);
    expect(info.uniform?.members.map((m) => [m.name, m.offset, m.type])).toEqual([
      ['n', 0, 'u32'],
      ['scale', 4, 'f32'],
      ['shift', 8, 'i32'],
    ]);
    expect(u32Constant(src, 'ACT_ODD')).toBe(7);
    await expect(entryInfo(src, 'other')).rejects.toThrow(/no @compute entry point "other"/);
  });

  it('packs uniforms by member name and refuses missing, unknown or out-of-range values', async () => {
    const u = (await entryInfo(src, 'main')).uniform!;
    const view = new DataView(packUniform(u, { n: 3, scale: 0.5, shift: -2 }));
    expect([view.getUint32(0, true), view.getFloat32(4, true), view.getInt32(8, true)]).toEqual([3, 0.5, -2]);
    expect(() => packUniform(u, { n: 3, scale: 1 })).toThrow(/shift not given/);
    expect(() => packUniform(u, { n: 3, scale: 1, shift: 0, extra: 1 })).toThrow(/no member "extra"/);
    expect(() => packUniform(u, { n: -1, scale: 1, shift: 0 })).toThrow(/does not fit u32/);
  });
});
