/** The benchmark's table (stdout) and the numbers behind it. */
import { describeMatmulConfig } from '../kernels/matmul.js';
import type { BenchReport, BenchRow } from './run.js';

const G = 1e9;

/** Achieved FLOP/s, on the device's clock where measured, else the wall's. */
export function achieved(row: BenchRow): { seconds: number; flops: number; bytes: number } {
  const seconds = row.ours.gpu ?? row.ours.wall;
  return { seconds, flops: row.work.flops / seconds, bytes: row.work.bytes / seconds };
}

function fmtSeconds(s: number | undefined): string {
  if (s === undefined) return '-';
  return s < 1 ? `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms` : `${s.toFixed(2)} s`;
}

export function benchTable(report: BenchReport): string {
  const peers = [...new Set(report.rows.flatMap((r) => r.peers.map((p) => p.peer)))];
  const header = ['workload', 'GFLOP', 'wall', 'GPU', 'GFLOP/s', '% FMA peak', 'GB/s', 'memory', ...peers.map((p) => `${p} (ours ×faster)`)];
  const rows: string[][] = [header];
  for (const r of report.rows) {
    const a = achieved(r);
    rows.push([
      r.workload.name,
      (r.work.flops / G).toFixed(2),
      fmtSeconds(r.ours.wall),
      fmtSeconds(r.ours.gpu),
      (a.flops / G).toFixed(1),
      `${((100 * a.flops) / report.peaks.flops).toFixed(1)}%`,
      (a.bytes / G).toFixed(1),
      `${(r.memoryBytes / 2 ** 20).toFixed(1)} MiB`,
      ...peers.map((name) => {
        const p = r.peers.find((x) => x.peer === name);
        if (!p) return '';
        if (p.seconds === undefined) return `skipped`;
        return `${fmtSeconds(p.seconds)} (×${(p.seconds / r.ours.wall).toFixed(1)})`;
      }),
    ]);
  }
  const widths = header.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const lines = rows.map((row) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
  const notes = [...new Set(report.rows.flatMap((r) => r.peers.filter((p) => p.note && p.seconds !== undefined).map((p) => `  ${p.peer}: ${p.note}`)))];
  const skips = report.rows.flatMap((r) => r.peers.filter((p) => p.skipped).map((p) => `  ${p.peer} on ${r.workload.name}: ${p.skipped}`));
  return [
    `device: ${report.adapter.summary}`,
    `peaks: ${(report.peaks.flops / G).toFixed(1)} GFLOP/s (vec4 FMA), ${(report.peaks.bandwidth / G).toFixed(1)} GB/s (copy), timed by ${report.peaks.timedBy}`,
    `matmul shapes (each product takes the one predicted fastest): ${report.matmulShapes.map(({ config: c, gflops }) => `${describeMatmulConfig(c)}${gflops > 1 ? ` (${gflops.toFixed(1)} GFLOP/s in tuning)` : ''}`).join('; ')}`,
    '',
    ...lines,
    ...(notes.length ? ['', 'peers ran with:', ...notes] : []),
    ...(skips.length ? ['', 'skipped:', ...skips] : []),
  ].join('\n');
}
