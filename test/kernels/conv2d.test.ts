/**
 * The convolution kernels against the float64 twin (src/layers/conv2d.ts):
 * the implicit products of matmul.wgsl (forward, input gradient) for several
 * block shapes, and the direct kernels of conv2d.wgsl (per-sample gradients,
 * and everything of grouped convolutions). Awkward geometry: a [3, 2]
 * kernel, stride 2, padding, dilation 2, one channel, no bias. Outputs are
 * pre-filled with NaN, so an element a kernel forgets fails.
 */
import { describe, expect, it } from 'vitest';
import { Conv2d, type ConvGeometry } from '../../src/kernels/conv2d.js';
import { DEFAULT_MATMUL_CONFIG, Matmul, matmulConfigProblem, type MatmulConfig } from '../../src/kernels/matmul.js';
import { conv2d } from '../../src/layers/conv2d.js';
import type { CpuRunner, LayerNode } from '../../src/layers/layer.js';
import { Rng } from '../../src/model/random.js';
import { expectClose, f32Tolerance } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

const CONFIGS: MatmulConfig[] = [
  DEFAULT_MATMUL_CONFIG,
  { tm: 3, tn: 5, wgM: 7, wgN: 3, core: 'plain' },
  { tm: 8, tn: 8, wgM: 4, wgN: 8, core: 'subgroup' },
  { tm: 40, tn: 8, wgM: 1, wgN: 8, core: 'subgroup' },
  { tm: 8, tn: 4, wgM: 7, wgN: 3, core: 'shared' },
];

const GEOMETRIES: Record<string, unknown>[] = [
  { in_channels: 3, out_channels: 5, kernel_size: [3, 2], stride: [2, 1], padding: [1, 1], dilation: [1, 2] },
  { in_channels: 1, out_channels: 2, kernel_size: 5, bias: false },
  { in_channels: 4, out_channels: 7, kernel_size: 1, stride: 2 },
];
const INPUT: Record<number, number[]> = { 3: [3, 7, 6], 1: [1, 5, 5], 4: [4, 5, 3] };

const NO_RUNNER = {} as CpuRunner;

function node(fields: Record<string, unknown>, groups = 1): LayerNode {
  const input = INPUT[fields['in_channels'] as number]!;
  const parsed = conv2d.parse({ ...fields, groups }, { where: 'test', input, name: () => 'c', layers: () => [] });
  return { type: 'conv2d', name: 'c', fields: parsed.fields, input, output: parsed.output, parameters: parsed.parameters!, children: [] };
}

/** The twin over a batch: y, dx and the per-sample gradients, each [n, …]. */
function reference(nd: LayerNode, w: Float64Array[], x: Float32Array, dy: Float32Array, n: number) {
  const [xs, ys] = [nd.input.reduce((a, b) => a * b, 1), nd.output.reduce((a, b) => a * b, 1)];
  const size = w.reduce((t, v) => t + v.length, 0);
  const out = { y: new Float64Array(n * ys), dx: new Float64Array(n * xs), g: new Float64Array(n * size) };
  for (let s = 0; s < n; s++) {
    const xi = Float64Array.from(x.subarray(s * xs, (s + 1) * xs));
    const { y } = conv2d.cpu.forward(nd as never, w, xi, NO_RUNNER);
    out.y.set(y, s * ys);
    const g = w.map((v) => new Float64Array(v.length));
    const dx = conv2d.cpu.backward(nd as never, w, { x: xi, y, saved: undefined, dy: Float64Array.from(dy.subarray(s * ys, (s + 1) * ys)) }, g, true, NO_RUNNER)!;
    out.dx.set(dx, s * xs);
    out.g.set(g[0]!, s * size);
    if (g[1]) out.g.set(g[1], s * size + g[0]!.length);
  }
  return out;
}

async function setup(nd: LayerNode, n: number, seed: number) {
  const rng = new Rng(seed);
  const [xs, ys] = [nd.input.reduce((a, b) => a * b, 1), nd.output.reduce((a, b) => a * b, 1)];
  const params = nd.parameters.map((p) => rng.normals(p.shape.reduce((a, b) => a * b, 1)));
  const pad = 5; // θ starts with other parameters: the kernels must read at the offset
  const theta = new Float32Array(pad + params.reduce((t, p) => t + p.length, 0)).fill(1e30);
  let at = pad;
  for (const p of params) {
    theta.set(p, at);
    at += p.length;
  }
  const x = rng.normals(n * xs);
  const dy = rng.normals(n * ys);
  const buf = (d: Float32Array, label: string) => gpu().storage(Math.max(4, d.byteLength), label, d);
  const nan = (count: number, label: string) => buf(new Float32Array(count).fill(NaN), label);
  const ref = reference(nd, params.map((p) => Float64Array.from(p)), x, dy, n);
  const size = theta.length - pad;
  const ldg = size + 3;
  return {
    ref,
    size,
    ldg,
    pad,
    bias: params.length > 1,
    taps: nd.parameters[0]!.shape.slice(1).reduce((a, b) => a * b, 1),
    buffers: { x: await buf(x, 'x'), dy: await buf(dy, 'dy'), theta: await buf(theta, 'θ'), y: await nan(n * ys, 'y'), z: await nan(n * ys, 'z'), dx: await nan(n * xs, 'dx'), g: await nan(n * ldg + 2, 'g'), scratch: await nan(4, 'scratch') },
  };
}

/** The per-sample rows at offset 2 with stride ldg, the elements between untouched (NaN). */
function rowsOf(g: Float32Array, n: number, size: number, ldg: number): { inside: number[]; outside: number[] } {
  const inside: number[] = [];
  const outside: number[] = [];
  g.forEach((v, k) => ((k - 2) % ldg < size && k >= 2 && k < 2 + n * ldg ? inside : outside).push(v));
  return { inside, outside };
}

describe.each(CONFIGS)('conv2d as implicit products, matmul %o', (config) => {
  it.for(GEOMETRIES)('forward and input gradient of %o', async (fields, ctx) => {
    const problem = matmulConfigProblem(config, gpu());
    if (problem) ctx.skip(`this adapter cannot run ${JSON.stringify(config)}: ${problem}`);
    const nd = node(fields);
    const n = 3;
    const { ref, pad, bias, taps, buffers: b } = await setup(nd, n, 17);
    const mm = await Matmul.create(gpu(), config);
    const [c, h, w] = nd.input as [number, number, number];
    const [co, oh, ow] = nd.output as [number, number, number];
    const f = nd.fields as { kernel_size: [number, number]; stride: [number, number]; padding: [number, number]; dilation: [number, number] };
    const shape: ConvGeometry = { cIn: c, h, w, cOut: co, oh, ow, kernel: f.kernel_size, stride: f.stride, padding: f.padding, dilation: f.dilation, groups: 1, bias };
    const layer = { weightOffset: pad, biasOffset: bias ? pad + co * taps : undefined };
    await gpu().step('conv', (step) => {
      mm.convForward(step, shape, { x: b.x, theta: b.theta, layer, z: b.z, scratch: b.scratch, y: b.y, batch: n, activation: 0 });
      mm.convInputGradient(step, shape, { delta: b.dy, theta: b.theta, layer, zBelow: b.dy, dx: b.dx, batch: n, activation: 0 });
    });
    const tol = { rtol: f32Tolerance(taps * oh * ow), atol: f32Tolerance(taps * oh * ow) };
    expectClose(await gpu().readF32(b.y, ref.y.length * 4), ref.y, tol, 'y');
    expectClose(await gpu().readF32(b.z, ref.y.length * 4), ref.y, tol, 'z');
    expectClose(await gpu().readF32(b.dx, ref.dx.length * 4), ref.dx, tol, 'dx');
    for (const buffer of Object.values(b)) gpu().buffers.release(buffer);
  });
});

describe('conv2d.wgsl, the patches (K-FAC\'s input rows)', () => {
  it.for(GEOMETRIES)('im2col of %o against the twin\'s patches', async (fields) => {
    const nd = node(fields);
    const n = 3;
    const [c, h, w] = nd.input as [number, number, number];
    const [co, oh, ow] = nd.output as [number, number, number];
    const f = nd.fields as { kernel_size: [number, number]; stride: [number, number]; padding: [number, number]; dilation: [number, number] };
    const g: ConvGeometry = { cIn: c, h, w, cOut: co, oh, ow, kernel: f.kernel_size, stride: f.stride, padding: f.padding, dilation: f.dilation, groups: 1, bias: false };
    const x = new Rng(23).normals(n * c * h * w);
    const rows = oh * ow * c * f.kernel_size[0] * f.kernel_size[1];
    const want = new Float64Array(n * rows);
    for (let s = 0; s < n; s++) want.set(conv2d.kronecker!.inputs(nd as never, Float64Array.from(x.subarray(s * c * h * w, (s + 1) * c * h * w))), s * rows);
    const bx = await gpu().storage(x.byteLength, 'x', x);
    const out = await gpu().storage((n * rows + 1) * 4, 'patches', new Float32Array(n * rows + 1).fill(NaN));
    const k = new Conv2d(gpu());
    await gpu().step('im2col', (step) => k.im2col(step, g, { n, x: bx, out }));
    const got = await gpu().readF32(out, (n * rows + 1) * 4);
    expectClose(got.subarray(0, n * rows), want, { rtol: 0, atol: 0 }, 'patches');
    expect(Number.isNaN(got[n * rows])).toBe(true);
    gpu().buffers.release(bx);
    gpu().buffers.release(out);
  });
});

describe('conv2d.wgsl, the direct kernels (per-sample gradients; grouped convolutions throughout)', () => {
  // The kernels run in blocks of 8 channels (of one group) by 8 pixels or taps (the bias a tap):
  // 19 channels of one group take three blocks, the last partial; 3 groups of 2 channels, one
  // each. At unit stride the input gradient runs in blocks too, as dy convolved with the flipped
  // kernel, whose padding dil·(k − 1) − pad is negative for padding [3, 2] with dilation [1, 2].
  it.for([
    [1, 6, true, [2, 1], [1, 1]],
    [3, 6, true, [2, 1], [1, 1]],
    [1, 19, false, [2, 1], [1, 1]],
    [3, 9, true, [2, 1], [1, 1]],
    [1, 19, true, [1, 1], [1, 1]],
    [3, 9, false, [1, 1], [1, 1]],
    [1, 10, true, [1, 1], [3, 2]],
  ] as const)('groups %i, %i output channels, bias %s, stride %o, padding %o: forward, input gradient and per-sample gradients', async ([groups, out, withBias, stride, padding]) => {
    const nd = node({ in_channels: 3, out_channels: out, kernel_size: [3, 2], stride, padding, dilation: [1, 2], bias: withBias }, groups);
    const n = 2;
    const { ref, size, ldg, pad, bias, taps, buffers: b } = await setup(nd, n, 19);
    const f = nd.fields as { kernel_size: [number, number]; stride: [number, number]; padding: [number, number]; dilation: [number, number] };
    const g: ConvGeometry = { cIn: 3, h: 7, w: 6, cOut: out, oh: nd.output[1]!, ow: nd.output[2]!, kernel: f.kernel_size, stride: f.stride, padding: f.padding, dilation: f.dilation, groups, bias };
    const k = new Conv2d(gpu());
    await gpu().step('conv', (step) => {
      k.forward(step, g, { n, x: b.x, theta: b.theta, wOffset: pad, y: b.y, z: b.z, scratch: b.scratch, activation: 0 });
      k.inputGradient(step, g, { n, dy: b.dy, theta: b.theta, wOffset: pad, dx: b.dx });
      k.perSampleGradient(step, g, { n, x: b.x, dy: b.dy, g: b.g, ldg, offset: 2 });
    });
    const tol = { rtol: f32Tolerance(taps * 7 * 6), atol: f32Tolerance(taps * 7 * 6) };
    expectClose(await gpu().readF32(b.y, ref.y.length * 4), ref.y, tol, 'y');
    expectClose(await gpu().readF32(b.dx, ref.dx.length * 4), ref.dx, tol, 'dx');
    const rows = rowsOf(await gpu().readF32(b.g, (n * ldg + 2) * 4), n, size, ldg);
    expectClose(rows.inside, Array.from({ length: n * size }, (_, j) => ref.g[j]!), tol, 'per-sample gradients');
    expectClose(rows.outside.map(Number.isNaN).map(Number), rows.outside.map(() => 1), { rtol: 0 }, 'untouched');
    for (const buffer of Object.values(b)) gpu().buffers.release(buffer);
  });
});
