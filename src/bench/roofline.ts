/**
 * The roofline plot: each workload's achieved FLOP/s against its arithmetic
 * intensity (FLOP per byte of compulsory traffic), under the roof of the
 * device's measured peaks, min(peak FLOP/s, intensity × bandwidth).
 */
import { renderSvg, type ChartSpec } from '../plot/svg.js';
import { achieved } from './report.js';
import type { BenchReport } from './run.js';

export function rooflineChart(report: BenchReport): ChartSpec {
  const G = 1e9;
  const points = report.rows.map((r) => ({ workload: r.workload.name, intensity: r.work.flops / r.work.bytes, gflops: achieved(r).flops / G }));
  const lo = Math.min(0.1, ...points.map((p) => p.intensity / 2));
  const hi = Math.max(1000, ...points.map((p) => p.intensity * 2));
  const roof: { intensity: number; gflops: number }[] = [];
  for (let x = lo; x <= hi * 1.0001; x *= 1.25) roof.push({ intensity: x, gflops: Math.min(report.peaks.flops, x * report.peaks.bandwidth) / G });
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: 'fisher-gpu roofline', subtitle: [report.adapter.summary, `peaks: ${(report.peaks.flops / G).toFixed(1)} GFLOP/s, ${(report.peaks.bandwidth / G).toFixed(1)} GB/s`] },
    width: 560,
    height: 380,
    layer: [
      {
        data: { values: roof },
        mark: { type: 'line', color: '#444', strokeDash: [4, 3] },
        encoding: {
          x: { field: 'intensity', type: 'quantitative', scale: { type: 'log' }, title: 'arithmetic intensity (FLOP/byte)' },
          y: { field: 'gflops', type: 'quantitative', scale: { type: 'log' }, title: 'GFLOP/s' },
        },
      },
      {
        data: { values: points },
        mark: { type: 'point', filled: true, size: 70 },
        encoding: {
          x: { field: 'intensity', type: 'quantitative', scale: { type: 'log' } },
          y: { field: 'gflops', type: 'quantitative', scale: { type: 'log' } },
          shape: { field: 'workload', type: 'nominal', title: null },
          color: { field: 'workload', type: 'nominal', title: null },
        },
      },
    ],
    config: { font: 'sans-serif', legend: { labelLimit: 400 } },
  };
}

export function rooflineSvg(report: BenchReport): Promise<string> {
  return renderSvg(rooflineChart(report));
}
