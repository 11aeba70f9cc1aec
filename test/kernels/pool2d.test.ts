/**
 * pool2d.wgsl against the float64 twin (src/layers/pool2d.ts): max and
 * average pooling, forward and backward, over a batch. Max pooling's
 * backward scatters from each window where the windows tile the input
 * (windowsTile) and gathers elsewhere: both are covered, the tiled one with
 * padding too. Outputs are pre-filled with NaN, so an element a kernel
 * forgets fails.
 */
import { describe, expect, it } from 'vitest';
import { Pool2d, windowsTile, type PoolGeometry, type PoolMode } from '../../src/kernels/pool2d.js';
import type { CpuRunner, LayerNode } from '../../src/layers/layer.js';
import { avgpool2d, maxpool2d } from '../../src/layers/pool2d.js';
import { Rng } from '../../src/model/random.js';
import { expectClose } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

const NO_RUNNER = {} as CpuRunner;

// [input [c, h, w], fields, whether max pooling's windows tile the input]
const CASES: [[number, number, number], Record<string, unknown>, boolean][] = [
  [[3, 6, 8], { kernel_size: 2 }, true],
  [[2, 5, 7], { kernel_size: 2, padding: 1 }, true],
  [[2, 5, 5], { kernel_size: 2 }, false], // the last row and column are in no window
  [[2, 7, 6], { kernel_size: 3, stride: 2, padding: 1 }, false], // overlapping windows
  [[1, 6, 9], { kernel_size: [2, 3], stride: [2, 3] }, true],
];

describe.each(['max', 'avg'] as PoolMode[])('%s pooling on the device against the twin', (mode) => {
  it.for(CASES)('input %o, %o', async ([input, fields, tiles]) => {
    const type = mode === 'max' ? maxpool2d : avgpool2d;
    const parsed = type.parse(fields, { where: 'test', input, name: () => 'p', layers: () => [] });
    const nd = { type: type.type, input, output: parsed.output, fields: parsed.fields, parameters: [], children: [] } as unknown as LayerNode;
    const [c, h, w] = input;
    const [, oh, ow] = parsed.output as [number, number, number];
    const f = parsed.fields as { kernel_size: [number, number]; stride: [number, number]; padding: [number, number] };
    const g: PoolGeometry = { c, h, w, oh, ow, kernel: f.kernel_size, stride: f.stride, padding: f.padding };
    expect(windowsTile(g)).toBe(tiles);
    const n = 3;
    const rng = new Rng(31);
    const x = rng.normals(n * c * h * w);
    const dy = rng.normals(n * c * oh * ow);
    const want = { y: new Float64Array(n * c * oh * ow), dx: new Float64Array(n * c * h * w) };
    for (let s = 0; s < n; s++) {
      const xs = Float64Array.from(x.subarray(s * c * h * w, (s + 1) * c * h * w));
      const { y, saved } = type.cpu.forward(nd as never, [], xs, NO_RUNNER);
      want.y.set(y, s * c * oh * ow);
      const dys = Float64Array.from(dy.subarray(s * c * oh * ow, (s + 1) * c * oh * ow));
      want.dx.set(type.cpu.backward(nd as never, [], { x: xs, y, saved, dy: dys }, [], true, NO_RUNNER)!, s * c * h * w);
    }
    const buf = (d: Float32Array | Uint32Array, label: string) => gpu().storage(d.byteLength, label, d);
    const b = {
      x: await buf(x, 'x'),
      dy: await buf(dy, 'dy'),
      y: await buf(new Float32Array(want.y.length).fill(NaN), 'y'),
      dx: await buf(new Float32Array(want.dx.length).fill(NaN), 'dx'),
      arg: await buf(new Uint32Array(want.y.length), 'arg'),
    };
    const k = new Pool2d(gpu());
    await gpu().step('pool', (step) => {
      k.forward(step, mode, g, { n, x: b.x, y: b.y, arg: b.arg });
      k.backward(step, mode, g, { n, dy: b.dy, dx: b.dx, arg: b.arg });
    });
    const tol = { rtol: 1e-6, atol: 1e-6 };
    expectClose(await gpu().readF32(b.y, want.y.length * 4), want.y, tol, 'y');
    expectClose(await gpu().readF32(b.dx, want.dx.length * 4), want.dx, tol, 'dx');
    for (const buffer of Object.values(b)) gpu().buffers.release(buffer);
  });
});
