/**
 * `fisher bench --whole-process`: what a command-line user pays, the time
 * from starting `fisher compute` to its file being written, for the issue's
 * workload (the diagonal empirical Fisher of 784-256-256-10 over 10⁴
 * samples), measured by running this very command as child processes: the
 * first run, then the median of the runs after it. With `fresh`, the first
 * run meets the adapter for the first time (an empty tuning cache of its
 * own), so it includes the first use's search.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export interface WholeProcess {
  workload: string;
  /** Seconds of each run, the first first. */
  runs: number[];
  first: number;
  /** The median of the runs after the first. */
  median: number;
  /** Whether the first run had an empty tuning cache (the first use's search included). */
  fresh: boolean;
}

const run = promisify(execFile);

export async function measureWholeProcess(options: { runs?: number; fresh?: boolean; log?: (line: string) => void } = {}): Promise<WholeProcess> {
  const cli = process.argv[1]!;
  const dir = await mkdtemp(join(tmpdir(), 'fisher-whole-'));
  const env = options.fresh ? { ...process.env, FISHER_GPU_CACHE_DIR: join(dir, 'cache') } : process.env;
  try {
    await run(process.execPath, [cli, 'example', '--out-dir', dir, '--widths', '784,256,256,10'], { env });
    const args = ['compute', '--model', join(dir, 'model.json'), '--weights', join(dir, 'weights.safetensors'), '--data', join(dir, 'data.safetensors'), '--out', join(dir, 'diag.safetensors'), '--quiet'];
    const runs: number[] = [];
    for (let i = 0; i < (options.runs ?? 4); i++) {
      const t0 = performance.now();
      await run(process.execPath, [cli, ...args], { env, maxBuffer: 1 << 24 });
      runs.push((performance.now() - t0) / 1000);
      options.log?.(`whole process, run ${i + 1}: ${runs[i]!.toFixed(2)} s`);
    }
    const later = runs.slice(1).sort((a, b) => a - b);
    const median = later.length ? later[Math.floor((later.length - 1) / 2)]! : runs[0]!;
    return { workload: 'diag empirical 784-256-256-10 N=10,000', runs, first: runs[0]!, median, fresh: options.fresh ?? false };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
