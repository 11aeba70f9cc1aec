/** Training on the GPU against the float64 CPU path: gradients, optimiser steps, penalties. */
import { describe, expect, it } from 'vitest';
import { CpuEngine, CpuModel } from '../../src/engine/cpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';
import type { OptimizerSpec } from '../../src/engine/optimizer.js';
import { Dataset } from '../../src/model/data.js';
import { Rng } from '../../src/model/random.js';
import { penaltyGradient, penaltyValue } from '../../src/train/penalty.js';
import { accuracy, train, TrainingDivergedError } from '../../src/train/train.js';
import { expectClose, expectRelativeError } from '../helpers/compare.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const cpu = new CpuEngine();

describe('training', () => {
  const model = randomModel([11, 13, 5], 'tanh', { type: 'categorical' }, 1);
  const batch = randomData(model, 37, 2);
  const P = model.parameterCount;

  it('the mean gradient equals the CPU path', async () => {
    const g = await (await new GpuEngine(gpu()).load(model)).meanGradient(batch);
    const c = await (await cpu.load(model)).meanGradient(batch);
    expectRelativeError(g, c, 1e-5, 'mean gradient');
  });

  const optimizers: OptimizerSpec[] = [
    { type: 'sgd', learningRate: 0.1 },
    { type: 'sgd', learningRate: 0.05, momentum: 0.9 },
    { type: 'adam', learningRate: 1e-2 },
  ];
  const rng = new Rng(3);
  const anchors = [
    { theta: rng.normals(P, 0.1), fisher: Float32Array.from(rng.normals(P), (v) => v * v) },
    { theta: rng.normals(P, 0.1), fisher: Float32Array.from(rng.normals(P), (v) => v * v) },
  ];
  const penalties = { none: undefined, ewc: penaltyGradient(anchors, 2, P), l2: penaltyGradient(anchors.map((a) => ({ theta: a.theta })), 0.5, P) };

  for (const optimizer of optimizers) {
    for (const [name, penalty] of Object.entries(penalties)) {
      it(`three ${optimizer.type}${optimizer.type === 'sgd' && optimizer.momentum ? ' with momentum' : ''} steps with penalty ${name} match the CPU path`, async () => {
        const [g, c] = [await new GpuEngine(gpu()).load(model), await cpu.load(model)];
        for (const m of [g, c]) await m.setOptimizer(optimizer, penalty);
        for (let s = 0; s < 3; s++) {
          const b = batch.slice(s * 10, s * 10 + 10 + s);
          await g.trainStep(b);
          await c.trainStep(b);
        }
        const [tg, tc] = [await g.parameters(), await c.parameters()];
        const theta0 = model.parameters();
        // Compare the change of θ, which is what the step computes.
        expectRelativeError(tg.map((v, i) => v - theta0[i]!), tc.map((v, i) => v - theta0[i]!), 1e-4, 'Δθ');
        g.release();
      });
    }
  }

  it.each(NETWORK_CASES)('on $name: the mean gradient and three Adam steps match the CPU path, and accuracy agrees', async (c) => {
    const net = caseModel(c, 5);
    const data = randomData(net, c.n, 6);
    const [g, m] = [await new GpuEngine(gpu()).load(net), await cpu.load(net)];
    expectRelativeError(await g.meanGradient(data), await m.meanGradient(data), 1e-5, 'mean gradient');
    for (const e of [g, m]) await e.setOptimizer({ type: 'adam', learningRate: 1e-3 });
    for (let s = 0; s < 3; s++) {
      const b = data.slice(s * 4, s * 4 + 4 + s);
      await g.trainStep(b);
      await m.trainStep(b);
    }
    const [tg, tc] = [await g.parameters(), await m.parameters()];
    const theta0 = net.parameters();
    expectRelativeError(tg.map((v, i) => v - theta0[i]!), tc.map((v, i) => v - theta0[i]!), 1e-4, 'Δθ');
    g.release();
    const trained = await train(gpu(), net, data, { epochs: 2, batchSize: c.batch, seed: 1 });
    if (net.likelihood.targets === 'labels') expect(await accuracy(gpu(), trained, data)).toBeCloseTo(await accuracy(cpu, trained, data), 10);
  });

  it('the penalty gradient is the derivative of the penalty value', () => {
    const theta = rng.normals(P);
    for (const [name, lambda, a] of [['ewc', 2, anchors], ['l2', 0.5, anchors.map((x) => ({ theta: x.theta }))]] as const) {
      const { scale, center } = penaltyGradient(a, lambda, P);
      const grad = Array.from(theta, (t, i) => scale[i]! * t - center[i]!);
      const h = 1e-3;
      const fd = Array.from({ length: P }, (_, i) => {
        const up = Float64Array.from(theta);
        const dn = Float64Array.from(theta);
        up[i]! += h;
        dn[i]! -= h;
        return (penaltyValue(a, lambda, up) - penaltyValue(a, lambda, dn)) / (2 * h);
      });
      expectClose(grad, fd, { rtol: 1e-5, atol: 1e-6 }, `${name} penalty gradient`);
    }
  });

  it('lowers the loss, reproducibly, and evaluates the same on both engines', async () => {
    // A task with signal: labels from a teacher of the same shape.
    const teacher = randomModel([11, 13, 5], 'tanh', { type: 'categorical' }, 9);
    const x = new Rng(4).normals(400 * 11);
    const f = await (await cpu.load(teacher)).forward(x, 400);
    const y = Float32Array.from({ length: 400 }, (_, s) => {
      const row = Array.from(f.subarray(s * 5, s * 5 + 5));
      return row.indexOf(Math.max(...row));
    });
    const data = new Dataset(x, y, 400, 11, 1);
    const meanLoss = (m: typeof model) => {
      const c = new CpuModel(m);
      let s = 0;
      for (let i = 0; i < data.n; i++) s += c.sampleLoss(data.x.subarray(i * 11, i * 11 + 11), data.y.subarray(i, i + 1));
      return s / data.n;
    };
    const options = { optimizer: { type: 'adam', learningRate: 1e-2 } as const, epochs: 5, batchSize: 32, seed: 5 };
    const trained = await train(gpu(), model, data, options);
    expect(meanLoss(trained)).toBeLessThan(0.7 * meanLoss(model));
    const again = await train(gpu(), model, data, options);
    expect(Array.from(again.parameters())).toEqual(Array.from(trained.parameters()));
    const [ag, ac] = [await accuracy(gpu(), trained, data), await accuracy(cpu, trained, data)];
    expect(ag).toBeGreaterThan(0.6);
    expect(Math.abs(ag - ac)).toBeLessThanOrEqual(2 / data.n);
  });

  it('stops with a clear error when training diverges', async () => {
    // A penalty far too stiff for the step size: each step multiplies θ by about −10^20.
    const stiff = { scale: new Float32Array(P).fill(1e20), center: new Float32Array(P) };
    await expect(train(gpu(), model, batch, { optimizer: { type: 'sgd', learningRate: 1 }, epochs: 3, penalty: stiff })).rejects.toThrow(/diverged in epoch \d/);
    await expect(train(gpu(), model, batch, { optimizer: { type: 'sgd', learningRate: 1 }, epochs: 3, penalty: stiff })).rejects.toThrow(TrainingDivergedError);
  });
});
