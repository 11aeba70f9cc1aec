/** The demo's table (plain text) and JSON record. */
import type { EwcResult, Method } from './ewc.js';

const pct = (a: number | undefined) => (a === undefined ? '' : `${(100 * a).toFixed(1)}%`);

/** Rows: method and stage; columns: tasks; then the mean over the tasks seen. */
export function accuracyTable(result: EwcResult): string {
  const T = result.settings.tasks;
  const header = ['method', 'after', ...Array.from({ length: T }, (_, t) => `task ${t + 1}`), 'mean'];
  const rows: string[][] = [header];
  for (const [method, stages] of Object.entries(result.accuracy) as [Method, number[][]][]) {
    stages.forEach((row, k) => {
      const mean = row.reduce((a, b) => a + b, 0) / row.length;
      rows.push([k === 0 ? method : '', `task ${k + 1}`, ...Array.from({ length: T }, (_, t) => pct(row[t])), pct(mean)]);
    });
  }
  const widths = header.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

/** Every number of the run, with its settings: the `--out` file. */
export function resultJson(result: EwcResult): unknown {
  return {
    format: 'fisher-gpu-ewc/1',
    accuracy: result.accuracy,
    settings: result.settings,
    device: result.device,
    backend: result.backend,
    seconds: result.seconds,
  };
}
