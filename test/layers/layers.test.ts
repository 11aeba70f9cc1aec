/**
 * Every layer type, in the networks of the case registry: the float64 twin
 * against brute force (central differences of the loss, direct summation,
 * sums of single-position gradients), then the GPU against the twin, per
 * tensor, for every kind and structure; and the estimators against each
 * other. The largest GPU error per layer type is printed at the end.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine, CpuModel } from '../../src/engine/cpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import type { DenseFisher } from '../../src/fisher/structures/full.js';
import { conv2d, type Conv2dFields } from '../../src/layers/conv2d.js';
import type { CpuRunner, LayerNode } from '../../src/layers/layer.js';
import { linear, type LinearFields } from '../../src/layers/linear.js';
import { Rng } from '../../src/model/random.js';
import { caseLayerTypes, caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { expectClose, expectPerTensor, expectRelativeError, perTensorError } from '../helpers/compare.js';
import { randomData } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const cpu = new CpuEngine();

/** Largest GPU relative error per layer type and structure, over every case that uses the type. */
const worst = new Map<string, { diag: number; full: number }>();
function record(types: string[], structure: 'diag' | 'full', err: number): void {
  for (const t of types) {
    const w = worst.get(t) ?? { diag: 0, full: 0 };
    w[structure] = Math.max(w[structure], err);
    worst.set(t, w);
  }
}

describe('the float64 twins against brute force', () => {
  it.each(NETWORK_CASES)('$name: per-sample gradient = central differences of the loss', (c) => {
    const model = caseModel(c, 3);
    const theta = Float64Array.from(model.parameters());
    const data = randomData(model, 2, 4);
    const at = (t: Float64Array) => new CpuModel(model, t);
    const base = at(theta);
    const x = data.x.subarray(model.inputs, 2 * model.inputs);
    const y = data.y.subarray(model.targetWidth, 2 * model.targetWidth);
    const g = new Float64Array(model.parameterCount);
    base.sampleGradient(x, y, g);
    const h = 1e-6;
    const fd = Array.from({ length: model.parameterCount }, (_, j) => {
      const up = theta.slice();
      const dn = theta.slice();
      up[j]! += h;
      dn[j]! -= h;
      return (at(up).sampleLoss(x, y) - at(dn).sampleLoss(x, y)) / (2 * h);
    });
    expectClose(g, fd, { rtol: 1e-5, atol: 1e-7 }, `${c.name}: gradient`);
  });

  it('conv2d forward equals the direct sum of its definition (PyTorch docs), for every option', () => {
    const rng = new Rng(7);
    const options: object[] = [{}, { stride: 2 }, { padding: [2, 1] }, { dilation: 2, padding: 2 }, { groups: 3 }, { bias: false, stride: [1, 2] }];
    for (const [k, extra] of options.entries()) {
      const node = conv2d.parse({ in_channels: 3, out_channels: 6, kernel_size: [3, 2], ...extra }, parseContext([3, 7, 5]));
      const full: LayerNode<Conv2dFields> = { type: 'conv2d', name: 'c', input: [3, 7, 5], output: node.output, fields: node.fields, parameters: node.parameters!, children: [] };
      const f = full.fields;
      const [oc, oh, ow] = full.output as [number, number, number];
      const cg = 3 / f.groups;
      const w = Float64Array.from(rng.normals(6 * cg * 6));
      const b = Float64Array.from(rng.normals(6));
      const x = Float64Array.from(rng.normals(3 * 7 * 5));
      const ref = new Float64Array(oc * oh * ow);
      for (let o = 0; o < oc; o++)
        for (let i = 0; i < oh; i++)
          for (let j = 0; j < ow; j++) {
            let s = f.bias ? b[o]! : 0;
            const group = Math.floor(o / (oc / f.groups));
            for (let c = 0; c < cg; c++)
              for (let m = 0; m < 3; m++)
                for (let n = 0; n < 2; n++) {
                  const r = i * f.stride[0] - f.padding[0] + m * f.dilation[0];
                  const q = j * f.stride[1] - f.padding[1] + n * f.dilation[1];
                  if (r >= 0 && r < 7 && q >= 0 && q < 5) s += w[((o * cg + c) * 3 + m) * 2 + n]! * x[((group * cg + c) * 7 + r) * 5 + q]!;
                }
            ref[(o * oh + i) * ow + j] = s;
          }
      const { y } = conv2d.cpu.forward(full, f.bias ? [w, b] : [w], x, NO_RUNNER);
      expectClose(y, ref, { rtol: 1e-12, atol: 1e-12 }, `conv2d option ${k}`);
    }
  });

  it('a shared layer per-sample gradient is the sum of its single-position gradients (conv2d and linear on [T, D])', () => {
    const rng = new Rng(8);
    const cases: [LayerNode, number][] = [];
    const c = conv2d.parse({ in_channels: 2, out_channels: 3, kernel_size: 3, stride: 2, padding: 1 }, parseContext([2, 5, 6]));
    cases.push([{ type: 'conv2d', name: 'c', input: [2, 5, 6], output: c.output, fields: c.fields, parameters: c.parameters!, children: [] }, 3 * 3 * 3]);
    const l = linear.parse({ in: 4, out: 3 }, parseContext([6, 4]));
    cases.push([{ type: 'linear', name: 'l', input: [6, 4], output: l.output, fields: l.fields as LinearFields, parameters: l.parameters!, children: [] }, 6]);
    for (const [node, positions] of cases) {
      const twin = node.type === 'conv2d' ? conv2d.cpu : linear.cpu;
      const w = node.parameters.map((p) => Float64Array.from(rng.normals(p.shape.reduce((a, b) => a * b, 1))));
      const x = Float64Array.from(rng.normals(node.input.reduce((a, b) => a * b, 1)));
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- either twin
      const { y, saved } = (twin as any).forward(node, w, x, NO_RUNNER) as { y: Float64Array; saved?: unknown };
      const dy = Float64Array.from(rng.normals(y.length));
      const whole = w.map((v) => new Float64Array(v.length));
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- either twin
      (twin as any).backward(node, w, { x, y, saved, dy }, whole, false, NO_RUNNER);
      const summed = w.map((v) => new Float64Array(v.length));
      const per = y.length / positions;
      for (let t = 0; t < positions; t++) {
        // dy at position t only: conv2d's positions are the pixels of each channel, linear's the rows.
        const one = dy.map((v, k) => ((node.type === 'conv2d' ? k % positions : Math.floor(k / per)) === t ? v : 0));
        const g = w.map((v) => new Float64Array(v.length));
        // eslint-disable-next-line @typescript-eslint/no-explicit-any -- either twin
        (twin as any).backward(node, w, { x, y, saved, dy: one }, g, false, NO_RUNNER);
        g.forEach((v, i) => v.forEach((e, k) => (summed[i]![k]! += e)));
      }
      whole.forEach((v, i) => expectClose(v, summed[i]!, { rtol: 1e-12, atol: 1e-12 }, `${node.type} parameter ${i}`));
    }
  });
});

describe.each(NETWORK_CASES)('GPU against the twin: $name', (c) => {
  const model = caseModel(c, 11);
  const data = randomData(model, c.n, 12);
  const types = caseLayerTypes(c);
  const layout = model.layout;

  // Convolutions of one group run directly on a CPU-SIMD driver such as lavapipe and as implicit
  // products on a GPU: both routes, whatever the adapter.
  it.for(['direct', 'products'] as const)('forward and per-sample gradients, per tensor (convolutions %s)', async (convolutions) => {
    const [gm, cm] = [await new GpuEngine(gpu(), undefined, { convolutions }).load(model), await cpu.load(model)];
    try {
      expectRelativeError(await gm.forward(data.x, data.n), await cm.forward(data.x, data.n), 1e-5, 'forward');
      const [g, c] = [await gm.gradients(data), await cm.gradients(data)];
      // Recorded before the assertion, so that the record's own check can fail.
      record(types, 'diag', perTensorError(g, c, layout));
      expectPerTensor(g, c, layout, 1e-5, 'per-sample gradients');
      const labels = { kind: 'sampled', seed: 5, draw: 1, firstSample: 3 } as const;
      expectPerTensor(await gm.gradients(data, labels), await cm.gradients(data, labels), layout, 1e-5, 'per-sample gradients, sampled labels');
    } finally {
      gm.release();
    }
  });

  it.each(['empirical', 'mc', 'exact'] as const)('diag and full, %s, streamed in batches', async (kind) => {
    const options = { kind, ...(kind === 'mc' ? { samples: 2, seed: 9 } : {}) };
    const gDiag = await fisher(gpu(), model, data, { ...options, batchSize: c.batch });
    const cDiag = await fisher(cpu, model, data, options);
    record(types, 'diag', perTensorError(gDiag.diagonal(), cDiag.diagonal(), layout));
    expectPerTensor(gDiag.diagonal(), cDiag.diagonal(), layout, 1e-5, `${kind} diag`);
    const gFull = (await fisher(gpu(), model, data, { ...options, structure: 'full', batchSize: c.batch })) as DenseFisher;
    const cFull = (await fisher(cpu, model, data, { ...options, structure: 'full' })) as DenseFisher;
    record(types, 'full', perTensorError(gFull.values, cFull.values, layout));
    expectPerTensor(gFull.values, cFull.values, layout, 1e-4, `${kind} full`);
    // The estimators agree with each other: diag is the diagonal of full.
    expectRelativeError(gDiag.diagonal(), gFull.diagonal(), 1e-5, 'diag vs the diagonal of full');
  });
});

describe('the record', () => {
  it('reports the largest GPU error per layer type', () => {
    const rows = [...worst.entries()].sort(([a], [b]) => a.localeCompare(b));
    console.log(`largest relative errors against float64, per layer type:\n${rows.map(([t, w]) => `  ${t.padEnd(10)} diag ${w.diag.toExponential(2)}  full ${w.full.toExponential(2)}`).join('\n')}`);
    for (const [, w] of rows) {
      expect(w.diag).toBeLessThanOrEqual(1e-5);
      expect(w.full).toBeLessThanOrEqual(1e-4);
    }
  });
});

const NO_RUNNER: CpuRunner = {
  forward: () => {
    throw new Error('no nested layers here');
  },
  backward: () => {
    throw new Error('no nested layers here');
  },
};

function parseContext(input: number[]): Parameters<typeof conv2d.parse>[1] {
  return { where: 'test', input, name: (v, prefix) => (typeof v === 'string' ? v : `${prefix}1`), layers: () => [] };
}
