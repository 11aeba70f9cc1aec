/**
 * The demo's figure, in the shape of Kirkpatrick et al.'s Figure 2A: one
 * panel per task, its test accuracy across the training stages, one line per
 * method. Drawn with Vega-Lite, compiled and rendered to SVG by Vega in Node
 * (no browser).
 */
import { renderSvg, type ChartSpec } from '../plot/svg.js';
import type { EwcResult, Method } from './ewc.js';

const COLORS: Record<Method, string> = { none: '#7f7f7f', l2: '#1f77b4', ewc: '#d62728' };
const LABELS: Record<Method, string> = { none: 'plain training', l2: 'L2', ewc: 'EWC' };

export function accuracyChart(result: EwcResult): ChartSpec {
  const values: { method: string; task: string; stage: number; accuracy: number }[] = [];
  for (const [method, rows] of Object.entries(result.accuracy) as [Method, number[][]][]) {
    rows.forEach((row, k) => row.forEach((acc, t) => values.push({ method: LABELS[method], task: `task ${t + 1}`, stage: k + 1, accuracy: acc })));
  }
  const methods = Object.keys(result.accuracy) as Method[];
  const s = result.settings;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: {
      text: 'Permuted MNIST: test accuracy per task as tasks are learned in sequence',
      subtitle: [`MLP 784-${s.hidden.join('-')}-10, ${s.epochs} epochs per task, ${s.optimizer.type} lr ${s.optimizer.learningRate}, λ_EWC ${s.lambdaEwc}, λ_L2 ${s.lambdaL2}`, `on ${result.device}`],
    },
    data: { values },
    facet: { row: { field: 'task', type: 'nominal', title: null, header: { labelAngle: 0, labelAlign: 'left' } } },
    spec: {
      width: 420,
      height: 110,
      layer: [
        {
          mark: { type: 'line', point: true },
          encoding: {
            x: { field: 'stage', type: 'quantitative', title: 'training stage (task just learned)', scale: { domain: [1, s.tasks] }, axis: { tickMinStep: 1, format: 'd' } },
            y: { field: 'accuracy', type: 'quantitative', title: 'accuracy', scale: { zero: false }, axis: { format: '%' } },
            color: {
              field: 'method',
              type: 'nominal',
              title: null,
              scale: { domain: methods.map((m) => LABELS[m]), range: methods.map((m) => COLORS[m]) },
            },
          },
        },
      ],
    },
    config: { font: 'sans-serif' },
  };
}

/** The chart as an SVG document. */
export function accuracySvg(result: EwcResult): Promise<string> {
  return renderSvg(accuracyChart(result));
}
