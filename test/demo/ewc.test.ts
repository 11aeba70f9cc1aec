/** The EWC demo's parts: the built-in data, the experiment's bookkeeping, the table and the plot. */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { DEFAULT_EWC_SETTINGS, runEwc } from '../../src/demo/ewc.js';
import { mnistSplit, permutePixels, PIXELS, taskPermutation } from '../../src/demo/mnist.js';
import { accuracySvg } from '../../src/demo/plot.js';
import { accuracyTable, resultJson } from '../../src/demo/report.js';
import { useGpu } from '../helpers/gpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';

const gpu = useGpu();

describe('permuted MNIST', () => {
  it('splits the 10,000 digits 8,000/2,000 by a seed, the same every time', () => {
    const a = mnistSplit(8000, 0);
    const b = mnistSplit(8000, 0);
    const c = mnistSplit(8000, 1);
    expect([a.train.n, a.test.n]).toEqual([8000, 2000]);
    expect(a.train.x.subarray(0, 2000)).toEqual(b.train.x.subarray(0, 2000));
    expect(a.train.y.subarray(0, 100)).not.toEqual(c.train.y.subarray(0, 100));
    // All ten classes, pixels in [0, 1].
    expect(new Set(a.test.y).size).toBe(10);
    expect(Math.min(...a.test.x.subarray(0, 10 * PIXELS))).toBeGreaterThanOrEqual(0);
    expect(Math.max(...a.test.x.subarray(0, 10 * PIXELS))).toBeLessThanOrEqual(1);
  });

  it('task 1 is the original pixels, later tasks fixed permutations of them', () => {
    expect(Array.from(taskPermutation(0, 0))).toEqual(Array.from({ length: PIXELS }, (_, i) => i));
    const p1 = taskPermutation(1, 0);
    expect(Array.from(p1).sort((a, b) => a - b)).toEqual(Array.from({ length: PIXELS }, (_, i) => i));
    expect(Array.from(taskPermutation(1, 0))).toEqual(Array.from(p1));
    expect(Array.from(taskPermutation(2, 0))).not.toEqual(Array.from(p1));
    const { test } = mnistSplit(8000, 0);
    const permuted = permutePixels(test, p1);
    for (const i of [0, 100, 783]) expect(permuted.x[5 * PIXELS + i]).toBe(test.x[5 * PIXELS + p1[i]!]);
    expect(permuted.y).toBe(test.y);
  });
});

describe('the experiment', () => {
  const settings = { ...DEFAULT_EWC_SETTINGS, tasks: 2, epochs: 2, hidden: [12], trainSize: 600, optimizer: { type: 'adam' as const, learningRate: 3e-3 }, lambdaEwc: 10, lambdaL2: 0.01 };

  it('records, for every method, the accuracy on each task seen after each stage; reproducible', async () => {
    const r = await runEwc(new GpuEngine(gpu()), settings);
    for (const m of ['none', 'l2', 'ewc'] as const) {
      const rows = r.accuracy[m]!;
      expect(rows.map((row) => row.length)).toEqual([1, 2]);
      for (const a of rows.flat()) expect(a).toBeGreaterThan(0.2); // well above chance (0.1) after two epochs
    }
    // Before any penalty acts (task 1), the three methods train identically.
    expect(r.accuracy.l2![0]).toEqual(r.accuracy.none![0]);
    expect(r.accuracy.ewc![0]).toEqual(r.accuracy.none![0]);
    const again = await runEwc(new GpuEngine(gpu()), settings);
    expect(again.accuracy).toEqual(r.accuracy);

    const table = accuracyTable(r);
    expect(table.split('\n')[0]).toMatch(/^method\s+after\s+task 1\s+task 2\s+mean$/);
    expect(table).toMatch(/ewc\s+task 1\s+\d+\.\d%/);
    const json = resultJson(r) as { accuracy: unknown; settings: unknown };
    expect(json.accuracy).toEqual(r.accuracy);
    const svg = await accuracySvg(r);
    expect(svg).toMatch(/^<svg/);
    expect(svg).toContain('EWC');
    expect(svg).toContain('task 2');
  });

  it('runs on the CPU reference path too, to the same accuracies within a sample or two', async () => {
    const small = { ...settings, methods: ['none' as const], trainSize: 300, hidden: [8] };
    const [g, c] = [await runEwc(new GpuEngine(gpu()), small), await runEwc(new CpuEngine(), small)];
    const test = 10_000 - small.trainSize;
    g.accuracy.none!.flat().forEach((a, i) => expect(Math.abs(a - c.accuracy.none!.flat()[i]!)).toBeLessThanOrEqual(3 / test));
  });
});
