/**
 * The memory planner: its device bytes against the buffer pool's measured
 * peak for every structure (within 10%), the batch it chooses under a
 * budget, and its refusals, each with its message, before any work.
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { GpuEngine } from '../../src/engine/gpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import { resolveOptions, type FisherOptions } from '../../src/fisher/options.js';
import { planEvery, planStructure } from '../../src/fisher/plan.js';
import type { DenseFisher } from '../../src/fisher/structures/full.js';
import type { BlockFisher } from '../../src/fisher/structures/block.js';
import { StoredFisher } from '../../src/fisher/structures/spill.js';
import { loadFisher } from '../../src/fisher/load.js';
import { expectRelativeError } from '../helpers/compare.js';
import type { Network } from '../../src/model/network.js';
import type { Dataset } from '../../src/model/data.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

async function planned(model: Network, options: FisherOptions, virtualSamples = 1) {
  const loaded = await new GpuEngine(gpu()).load(model);
  try {
    const o = resolveOptions(options);
    return planStructure(loaded, model, o, virtualSamples, o.memoryBudget);
  } finally {
    loaded.release();
  }
}

/** The pool's peak over one fisher call, from a trimmed pool. */
async function measured(model: Network, data: Dataset, options: FisherOptions): Promise<number> {
  const pool = gpu().buffers;
  pool.trim();
  const base = pool.stats().current;
  pool.resetPeak();
  await fisher(gpu(), model, data, options);
  const peak = pool.stats().peak - base;
  pool.trim();
  return peak;
}

describe('the planner against the buffer pool', () => {
  const mlp = randomModel([30, 24, 6], 'relu', { type: 'categorical' }, 3);
  const conv = caseModel(NETWORK_CASES.find((c) => c.name.startsWith('residual blocks'))!, 4);
  const cases: { name: string; model: Network; options: FisherOptions }[] = [
    { name: 'diag, MLP', model: mlp, options: { structure: 'diag' } },
    { name: 'full, MLP', model: mlp, options: { structure: 'full' } },
    { name: 'block, MLP, exact', model: mlp, options: { structure: 'block', kind: 'exact' } },
    { name: 'kfac, MLP', model: mlp, options: { structure: 'kfac' } },
    { name: 'ekfac, MLP', model: mlp, options: { structure: 'ekfac' } },
    { name: 'lowrank, MLP', model: mlp, options: { structure: 'lowrank', rank: 4 } },
    { name: 'diag, residual CNN', model: conv, options: { structure: 'diag' } },
    { name: 'kfac reduce, residual CNN, mc', model: conv, options: { structure: 'kfac', kfac: 'reduce', kind: 'mc', samples: 2 } },
    { name: 'ekfac, residual CNN', model: conv, options: { structure: 'ekfac' } },
    { name: 'block, residual CNN', model: conv, options: { structure: 'block' } },
  ];

  for (const { name, model, options } of cases) it(`${name}: the planned device bytes are the measured peak within 10%`, async () => {
    const data = randomData(model, 97, 5);
    const virtualSamples = options.kind === 'exact' ? model.outputs : (options.samples ?? 1);
    // A device budget that makes several batches.
    const one = await planned(model, { ...options, batchSize: 1 }, virtualSamples);
    const budget = { device: one.device.fixed + 40 * one.device.perSample };
    const plan = await planned(model, { ...options, memoryBudget: budget }, virtualSamples);
    expect(plan.fits, plan.reasons.join('\n')).toBe(true);
    expect(plan.batch).toBeLessThan(97);
    expect(plan.device.total).toBeLessThanOrEqual(budget.device);
    const peak = await measured(model, data, { ...options, memoryBudget: budget });
    expect(Math.abs(peak - plan.device.total) / plan.device.total, `measured ${peak} B, planned ${plan.device.total} B`).toBeLessThanOrEqual(0.1);
  });
});

// On a CPU adapter (lavapipe, where these tests run), the diagonal's batches, which cost only their
// dispatches, are no larger than needed: the network's buffers within 16 MiB, at least 1,024 rows.
describe('the batch a CPU adapter prefers', () => {
  it('caps the diagonal of a wide network where no batch size is asked for, and nothing else', async () => {
    const wide = randomModel([784, 256, 256, 10], 'relu', { type: 'categorical' }, 3);
    const loaded = await new GpuEngine(gpu()).load(wide);
    const network = loaded.memory('diag').shared.perSample;
    loaded.release();
    const expected = Math.max(1024, 128 * Math.floor(16 * 2 ** 20 / network / 128));
    expect(expected).toBeLessThan(4096);
    const diag = await planned(wide, { structure: 'diag' });
    expect(diag.batch).toBe(expected);
    expect(diag.reasons.join('\n')).toContain(`batch ${expected}, set by the engine's preference (a CPU adapter's diag pass`);
    // Asked for, a larger batch is taken; other structures, and small networks, keep the largest.
    expect((await planned(wide, { structure: 'diag', batchSize: 4096 })).batch).toBe(4096);
    expect((await planned(wide, { structure: 'kfac' })).batch).toBe(4096);
    expect((await planned(randomModel([64, 32, 10], 'relu', { type: 'categorical' }, 3), { structure: 'diag' })).batch).toBe(4096);
  });
});

// A hidden layer's pre-activation z is kept only where the activation's derivative needs it (GELU):
// ReLU, tanh and sigmoid are differentiated from their output (derivativeCode), which is kept anyway.
describe('the pre-activations a batch keeps', () => {
  it('for GELU layers only: a ReLU network of the same widths holds one [batch, width] buffer less per hidden layer', async () => {
    const perSample = async (activation: 'relu' | 'tanh' | 'sigmoid' | 'gelu') => {
      const loaded = await new GpuEngine(gpu()).load(randomModel([30, 24, 16, 6], activation, { type: 'categorical' }, 3));
      const bytes = loaded.memory('diag').shared.perSample;
      loaded.release();
      return bytes;
    };
    const gelu = await perSample('gelu');
    for (const activation of ['relu', 'tanh', 'sigmoid'] as const) expect(gelu - (await perSample(activation)), activation).toBe(4 * (24 + 16));
  });
});

describe('refusals, before any work', () => {
  const model = randomModel([30, 24, 6], 'relu', { type: 'categorical' }, 3);
  const data = randomData(model, 20, 5);

  it('a budget below what a batch of one needs names the bytes', async () => {
    await expect(fisher(gpu(), model, data, { structure: 'diag', memoryBudget: { device: 1000 } })).rejects.toThrow(
      /structure "diag" does not fit: device \(diag pass\): a batch of one needs [\d.]+ KiB \([\d.]+ KiB fixed, [\d.]+ (KiB|B) per sample\), more than the 1000 B budget; no structure fits this budget/,
    );
  });

  it('a structure whose host memory exceeds the budget, with the structures that fit', async () => {
    const full = await planned(model, { structure: 'full' });
    const budget = full.host - 1;
    await expect(fisher(gpu(), model, data, { structure: 'full', memoryBudget: budget })).rejects.toThrow(/structure "full" does not fit: host: its sums and result take .* more than the .* available; structures that fit: diag, block, kfac, ekfac, lowrank/);
  });

  it('a result to be written to disk larger than the free space there', async () => {
    const p = model.parameterCount;
    const budget = { host: 24 * p * 5, disk: 4 * p * p - 1 };
    await expect(fisher(gpu(), model, data, { structure: 'full', spill: '/nonexistent/never.safetensors', memoryBudget: budget })).rejects.toThrow(
      /structure "full" does not fit: disk: the result takes [\d.]+ MiB, more than the [\d.]+ MiB free where it goes; structures that fit: diag, block, kfac, ekfac$/,
    );
  });

  it('plans every structure, with a mark on those that fit, on either engine', async () => {
    const loaded = await new CpuEngine().load(model);
    const plans = planEvery(loaded, model, resolveOptions({}), 1, { host: 100_000 });
    expect(plans.map((p) => [p.structure, p.fits])).toEqual([
      ['diag', true],
      ['full', false],
      ['block', false],
      ['kfac', true],
      ['ekfac', true],
      ['lowrank', false],
    ]);
    for (const p of plans) expect(p.reasons.length).toBeGreaterThan(0);
  });
});

describe('full and block beyond the host budget, written to disk tile by tile', () => {
  it('full and block equal the ones held in memory, on the GPU and the CPU, in several passes', async () => {
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { readSafetensors } = await import('../../src/io/safetensors.js');
    const dir = await mkdtemp(join(tmpdir(), 'fisher-spill-'));
    try {
      const model = caseModel(NETWORK_CASES[0]!, 3);
      const data = randomData(model, 31, 4);
      const p = model.parameterCount;
      for (const [name, target] of [['gpu', gpu()], ['cpu', new CpuEngine()]] as const) {
        const memory = (await fisher(target, model, data, { structure: 'full', kind: 'mc', samples: 2, seed: 5 })) as DenseFisher;
        const path = join(dir, `${name}.safetensors`);
        // Room for 7 rows of F on the host: ⌈P/7⌉ passes.
        const stored = await fisher(target, model, data, { structure: 'full', kind: 'mc', samples: 2, seed: 5, spill: path, memoryBudget: { host: 24 * p * 7 }, batchSize: 9 });
        expect(stored).toBeInstanceOf(StoredFisher);
        const file = await readSafetensors(path);
        expect(file.tensors.get('fisher')!.shape).toEqual([p, p]);
        expect(file.metadata).toMatchObject({ structure: 'full', kind: 'mc', samples: '2', seed: '5', n: '31' });
        expectRelativeError(file.tensors.get('fisher')!.data as Float32Array, Float32Array.from(memory.values), name === 'gpu' ? 1e-6 : 1e-7, `${name}: the file against memory`);
        // Batches of 9 here, the largest there: the GPU's float32 batch partials differ by rounding.
        expectRelativeError(stored.diagonal(), memory.diagonal(), name === 'gpu' ? 1e-6 : 1e-12, `${name}: diagonal`);
        // Products read the file a slice at a time; a dense factorisation is refused, conjugate gradients work.
        const v = Float64Array.from({ length: p }, (_, i) => Math.sin(i + 1));
        expectRelativeError(stored.mv(v), memory.mv(v), 1e-6, `${name}: mv from the file`);
        expect(() => stored.solve(v, { damping: 0.1 })).toThrow(/lives in .*: a dense Cholesky .* method "cg"/);
        expectRelativeError(stored.solve(v, { damping: 0.1, method: 'cg', tolerance: 1e-10 }), memory.solve(v, { damping: 0.1 }), 1e-5, `${name}: cg on the file`);
        // Loading the file gives the same stored Fisher.
        const loaded = await loadFisher(path);
        expect(loaded.info).toEqual(stored.info);
        expectRelativeError(loaded.mv(v), stored.mv(v), 1e-14, `${name}: loaded mv`);
      }
      // block: each layer's block in pieces of rows, several layers' pieces to a pass.
      const blocks = (await fisher(gpu(), model, data, { structure: 'block', batchSize: 9 })) as BlockFisher;
      const path = join(dir, 'block.safetensors');
      const largest = Math.max(...model.layout.layers.map((l) => l.size));
      const stored = await fisher(gpu(), model, data, { structure: 'block', spill: path, memoryBudget: { host: 24 * largest * 5 }, batchSize: 9 });
      expect(stored).toBeInstanceOf(StoredFisher);
      const file = await readSafetensors(path);
      model.layout.layers.forEach((l, k) => {
        expect(file.tensors.get(`${l.name}.block`)!.shape).toEqual([l.size, l.size]);
        expectRelativeError(file.tensors.get(`${l.name}.block`)!.data as Float32Array, Float32Array.from(blocks.blocks[k]!), 1e-6, `${l.name}.block from the file`);
      });
      expectRelativeError(stored.diagonal(), blocks.diagonal(), 1e-12, 'block diagonal');
      const v = Float64Array.from({ length: p }, (_, i) => Math.cos(i));
      expectRelativeError(stored.mv(v), blocks.mv(v), 1e-6, 'block mv from the file');
      expect(stored.frobeniusNorm()).toBeCloseTo(blocks.frobeniusNorm(), 5);
      // Without a file to write to, a full Fisher over the host budget is refused before any work.
      await expect(fisher(gpu(), model, data, { structure: 'full', memoryBudget: { host: 24 * p * 7 } })).rejects.toThrow(/structure "full" does not fit: host: its sums and result take/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
