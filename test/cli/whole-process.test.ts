/** The whole-process report's statistics: the median of the later runs, and the peers' ratios run by run. */
import { describe, expect, it } from 'vitest';
import { pairedRatio, wholeProcessLines, type WholeProcess } from '../../src/cli/whole-process.js';

describe('whole-process report', () => {
  it('pairs each later run of a peer with ours of the same round, and takes the median of the ratios', () => {
    // The first round is a first use for both: left out. Round 3 is a slow spell for both.
    expect(pairedRatio([9, 2, 4, 2.2], [9, 3, 6, 2.2])).toBeCloseTo(1.5, 12);
    // An even count: the mean of the middle two.
    expect(pairedRatio([1, 1, 1, 1, 1], [1, 1, 2, 3, 4])).toBeCloseTo(2.5, 12);
    // One run: the first is all there is.
    expect(pairedRatio([2], [3])).toBeCloseTo(1.5, 12);
  });

  it('reports the median of the later runs, the ratio of the medians and the paired ratio', () => {
    const w: WholeProcess = {
      workload: 'diag empirical 784-256-256-10 N=10,000',
      runs: [3, 2, 1.8, 2.4, 2.2],
      first: 3,
      median: 2.1,
      fresh: false,
      peers: [
        { peer: 'jax-wasm', name: 'jax-js WebAssembly (batched)', runs: [3, 2.6, 2.7, 2.5, 2.6], first: 3, median: 2.6, pairedRatio: 1.2, phases: { computing: 2.2 } },
        { peer: 'tfjs-webgpu', name: 'TF.js WebGPU (batched)', skipped: 'its process failed' },
      ],
    };
    const [ours, jax, tfjs] = wholeProcessLines(w);
    expect(ours).toBe('whole process, fisher compute (diag empirical 784-256-256-10 N=10,000): first run 3.00 s, then 2.10 s (median of 4)');
    expect(jax).toBe('whole process, jax-js WebAssembly (batched): first run 3.00 s, then 2.60 s (computing 2.20 s); fisher compute is 1.24× as fast; run by run, the median ratio is 1.20×');
    expect(tfjs).toBe('whole process, TF.js WebGPU (batched): not run (its process failed)');
  });
});
