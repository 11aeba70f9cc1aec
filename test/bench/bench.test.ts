/** The benchmark's work model, the tuning cache and the tuning's scoring (its numbers are never asserted). */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relativeDifference, resultValues } from '../../src/bench/run.js';
import { peersDir, tfjsPerSamplePeer } from '../../src/bench/peers.js';
import { tfUnsupported } from '../../src/bench/tf-network.js';
import { findTorch, torchPeer } from '../../src/bench/torch.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { randomData } from '../helpers/fixtures.js';
import { candidates, gridCandidates, loadsPerFma, SCORED } from '../../src/bench/tune.js';
import { adapterKind, defaultShapesFor, firstUseProblems, quickCandidates, SCORED_PRODUCTS, scoreShape, startsAnother } from '../../src/engine/autotune.js';
import { fisherWork, fullSuite, kernelWork, parameterCount, quickSuite } from '../../src/bench/workloads.js';
import { ensureTuned, FIRST_USE_BUDGET_SECONDS, isTuned, matmulConfigFor, matmulShapesFor, paretoShapes, saveTuning } from '../../src/engine/tuning.js';
import { DEFAULT_MATMUL_CONFIG, matmulConfigProblem, type MatmulConfig } from '../../src/kernels/matmul.js';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import { Dataset } from '../../src/model/data.js';
import { Network } from '../../src/model/network.js';
import { Rng } from '../../src/model/random.js';
import { mlpSpec } from '../../src/model/spec.js';
import { useGpu } from '../helpers/gpu.js';
import type { GpuDevice } from '../../src/gpu/device.js';

const gpu = useGpu();

describe('work model', () => {
  it('counts the diagonal Fisher of 784-256-256-10 over 10^4 samples as about 12.1 GFLOP', () => {
    const w = fisherWork({ type: 'fisher', name: '', arch: 'mlp', widths: [784, 256, 256, 10], n: 10_000, structure: 'diag', kind: 'empirical' });
    // forward 2NΣ in·out + backward 2N(256·256 + 256·10) + squared gradient 2NΣ (in+1)·out
    const expected = 2e4 * (784 * 256 + 256 * 256 + 256 * 10) + 2e4 * (256 * 256 + 256 * 10) + 2e4 * (785 * 256 + 257 * 256 + 257 * 10);
    expect(w.flops).toBe(expected);
    expect(w.flops / 1e9).toBeCloseTo(12.12, 2);
    expect(w.bytes).toBeGreaterThan(4 * 10_000 * 784);
  });

  it('counts K-FAC of an MLP as the passes plus the Gram products of each layer\'s inputs (once) and output gradients (per virtual sample)', () => {
    const base = { type: 'fisher' as const, name: '', arch: 'mlp' as const, widths: [5, 4, 3], n: 7 };
    const passes = 2 * 7 * (5 * 4 + 4 * 3) + 2 * 7 * 4 * 3;
    expect(fisherWork({ ...base, structure: 'kfac', kind: 'empirical' }).flops).toBe(passes + 7 * (5 * 6 + 4 * 5) + 7 * (4 * 5 + 3 * 4));
    expect(fisherWork({ ...base, structure: 'kfac', kind: 'exact' }).flops).toBe(2 * 7 * (5 * 4 + 4 * 3) + 3 * 2 * 7 * 4 * 3 + 7 * (5 * 6 + 4 * 5) + 3 * 7 * (4 * 5 + 3 * 4));
    expect(fisherWork({ ...base, structure: 'block', kind: 'empirical' }).flops).toBe(passes + 7 * 24 * 25 + 7 * 15 * 16);
    // EK-FAC: K-FAC, then the passes again and per layer the rotations and the rotated squared-gradient product.
    const rotations = 2 * 7 * (5 * 6 + 4 * 4 + 6 * 4) + 2 * 7 * (4 * 5 + 3 * 3 + 5 * 3);
    expect(fisherWork({ ...base, structure: 'ekfac', kind: 'empirical' }).flops).toBe(fisherWork({ ...base, structure: 'kfac', kind: 'empirical' }).flops + passes + rotations);
  });

  it('counts the symmetric Gram once per pair, and exact as one forward pass and a backward pass per output', () => {
    expect(kernelWork('gram', 100, 10, 0).flops).toBe(100 * 10 * 11);
    expect(parameterCount([64, 32, 10])).toBe(2410);
    const base = { type: 'fisher' as const, name: '', arch: 'mlp' as const, widths: [5, 4, 3], n: 7, structure: 'diag' as const };
    const forward = 2 * 7 * (5 * 4 + 4 * 3);
    expect(fisherWork({ ...base, kind: 'exact' }).flops - forward).toBe(3 * (fisherWork({ ...base, kind: 'empirical' }).flops - forward));
  });

  it('counts the products of the cnn example: each conv and linear weight at every position it acts at', () => {
    const w = fisherWork({ type: 'fisher', name: '', arch: 'cnn', widths: [], n: 1000, structure: 'diag', kind: 'empirical' });
    const forward = 150 * 28 * 28 + 2400 * 10 * 10 + 48000 + 1200; // conv1, conv2, fc1, fc2 multiply-adds per sample
    const conv1 = 150 * 28 * 28;
    // forward, backward to every layer's input but the first's, per-sample gradients
    expect(w.flops).toBe(2 * 1000 * (forward + (forward - conv1) + forward));
  });

  it('names every workload uniquely', () => {
    for (const suite of [fullSuite(), quickSuite()]) expect(new Set(suite.map((w) => w.name)).size).toBe(suite.length);
  });
});

describe('tuning', () => {
  let dir = '';
  const saved = { ...process.env };
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fisher-tuning-'));
    process.env['FISHER_GPU_CACHE_DIR'] = dir;
    delete process.env['FISHER_GPU_TUNING'];
  });
  afterAll(async () => {
    process.env = saved;
    await rm(dir, { recursive: true, force: true });
  });

  it('prunes the grid by the cost model to a few candidates the device can run, the default among them, and scores one', async () => {
    const all = candidates(gpu());
    expect(all.length).toBeGreaterThan(3);
    expect(all.length).toBeLessThanOrEqual(SCORED + 1);
    expect(all).toContainEqual(DEFAULT_MATMUL_CONFIG);
    for (const c of [...all, ...quickCandidates(gpu())]) expect(matmulConfigProblem(c, gpu())).toBeUndefined();
    // The survivors are the grid's cheapest by loads per FMA.
    const kind = adapterKind(gpu());
    const cut = Math.max(...all.filter((c) => JSON.stringify(c) !== JSON.stringify(DEFAULT_MATMUL_CONFIG)).map((c) => loadsPerFma(c, kind)));
    expect(gridCandidates(gpu()).filter((c) => loadsPerFma(c, kind) < cut).every((c) => all.some((a) => JSON.stringify(a) === JSON.stringify(c)))).toBe(true);
    expect(await scoreShape(gpu(), DEFAULT_MATMUL_CONFIG, 'probe', 1)).toBeGreaterThan(0);
  });

  it('an adapter never tuned gets its kind\'s defaults: lavapipe is a CPU-SIMD driver', async () => {
    await rm(join(dir, 'tuning.json'), { force: true });
    expect(adapterKind(gpu()) === 'cpu').toBe(/llvmpipe|swiftshader/i.test(gpu().adapter.description));
    expect(matmulShapesFor(gpu())).toEqual(defaultShapesFor(gpu()));
    for (const s of defaultShapesFor(gpu())) expect(matmulConfigProblem(s.config, gpu())).toBeUndefined();
  });

  it('the first use scores one small product on a CPU-SIMD driver (compiles take seconds) and the full products on a GPU (small ones time the launch)', () => {
    const as = (description: string) => ({ adapter: { description, vendor: '', architecture: '', device: '' } }) as unknown as GpuDevice;
    expect(firstUseProblems(as('llvmpipe (LLVM 15.0.6, 256 bits)'))).toEqual({ size: 'probe', products: ['squared_gradient'] });
    expect(firstUseProblems(as('NVIDIA H200'))).toEqual({ size: 'full', products: SCORED_PRODUCTS });
    expect(firstUseProblems(gpu()).size).toBe(adapterKind(gpu()) === 'cpu' ? 'probe' : 'full');
  });

  it('stores the winner per adapter and the engine reads it back; a shape that does not fit is ignored; an old cache still reads', async () => {
    const defaults = defaultShapesFor(gpu());
    const tuned = { tm: 4, tn: 8, wgM: 4, wgN: 8, core: 'plain' as const };
    await saveTuning(gpu(), { matmul: tuned, gflops: 2, defaultGflops: 1, date: 'now' });
    expect(matmulConfigFor(gpu())).toEqual(tuned);
    expect(isTuned(gpu())).toBe(true);
    process.env['FISHER_GPU_TUNING'] = 'off';
    expect(matmulShapesFor(gpu())).toEqual([{ config: DEFAULT_MATMUL_CONFIG, gflops: 1 }]);
    delete process.env['FISHER_GPU_TUNING'];
    await saveTuning(gpu(), { matmul: { tm: 99, tn: 8, wgM: 1, wgN: 8, core: 'plain' as const }, gflops: 2, defaultGflops: 1, date: 'now' });
    expect(matmulShapesFor(gpu())).toEqual(defaults);
    // Before the core field, caches said subgroups: true | false.
    const old = { tm: 8, tn: 8, wgM: 4, wgN: 8, subgroups: false } as unknown as MatmulConfig;
    await saveTuning(gpu(), { matmul: old, gflops: 2, defaultGflops: 1, date: 'then' });
    expect(matmulConfigFor(gpu())).toEqual({ tm: 8, tn: 8, wgM: 4, wgN: 8, core: 'plain' });
  });

  it('offers the tuned shape first, then the scored shapes on the front of tile against rate that fit the device', async () => {
    const tuned = { config: { tm: 8, tn: 8, wgM: 8, wgN: 8, core: 'plain' as const }, gflops: 20 };
    const smaller = { config: { tm: 4, tn: 4, wgM: 8, wgN: 8, core: 'plain' as const }, gflops: 12 };
    const dominated = { config: { tm: 8, tn: 4, wgM: 8, wgN: 8, core: 'plain' as const }, gflops: 11 };
    const unfit = { config: { tm: 99, tn: 8, wgM: 1, wgN: 8, core: 'plain' as const }, gflops: 50 };
    await saveTuning(gpu(), { matmul: tuned.config, gflops: 20, defaultGflops: 20, ranked: [unfit, tuned, smaller, dominated], date: 'now' });
    expect(matmulShapesFor(gpu())).toEqual([tuned, smaller]);
  });

  it('starts another candidate only if, at the pace of the last, it ends within the budget', () => {
    // lavapipe, a fresh machine: 4.5 s a candidate, mostly compiling, against a budget of 5 s.
    expect(startsAnother(4.5, 4.5, 5)).toBe(false);
    // With Mesa's cache warm, or on a GPU: a fraction of a second each.
    expect(startsAnother(1.2, 0.4, 5)).toBe(true);
    expect(startsAnother(4.6, 0.4, 5)).toBe(true);
    expect(startsAnother(4.8, 0.4, 5)).toBe(false);
    expect(startsAnother(100, 1, Infinity)).toBe(true);
  });

  it('the first use of an adapter searches a few shapes within its budget, caches them and says so in one line; later uses read the cache', async () => {
    await rm(join(dir, 'tuning.json'), { force: true });
    const said: string[] = [];
    const t0 = performance.now();
    const entry = await ensureTuned(gpu(), (line) => said.push(line));
    const seconds = (performance.now() - t0) / 1000;
    expect(entry?.search).toBe('first use');
    expect(said).toEqual([expect.stringMatching(/^fisher: first use of .*: chose .* cached in .*FISHER_GPU_TUNING=off skips this$/)]);
    // A candidate starts only if, at the pace of the last, it ends within the budget; the first always does.
    expect(seconds).toBeLessThan(FIRST_USE_BUDGET_SECONDS + 15);
    expect(matmulConfigFor(gpu())).toEqual(entry!.matmul);
    expect(await ensureTuned(gpu(), (line) => said.push(line))).toBeUndefined();
    expect(said).toHaveLength(1);
    process.env['FISHER_GPU_TUNING'] = 'off';
    await rm(join(dir, 'tuning.json'), { force: true });
    expect(await ensureTuned(gpu())).toBeUndefined();
    delete process.env['FISHER_GPU_TUNING'];
  });
});

describe('shapes to choose from', () => {
  const shape = (tm: number, wgM: number, gflops: number) => ({ config: { tm, tn: 8, wgM, wgN: 8, core: 'subgroup' as const }, gflops });
  it('keeps the front of tile size against rate: a shape survives only if no smaller tile is as fast', () => {
    const tall = shape(32, 8, 35); // 256 × 64
    const half = shape(32, 4, 33); // 128 × 64: smaller, slower: kept
    const slowHalf = shape(16, 8, 20); // 128 × 64 again, slower: dropped
    const small = shape(8, 8, 25); // 64 × 64: kept
    const bigSlow = shape(32, 8, 10); // tall's tile, slower: dropped
    expect(paretoShapes([tall, half, slowHalf, small, bigSlow])).toEqual([tall, half, small]);
    // Exact duplicates keep the first.
    expect(paretoShapes([tall, tall])).toEqual([tall]);
  });
});

describe('PyTorch peer', () => {
  const w = { type: 'fisher' as const, name: 'tiny', arch: 'mlp' as const, widths: [6, 5, 3], n: 40, structure: 'diag' as const, kind: 'empirical' as const };
  const model = Network.random(mlpSpec(w.widths), 4);
  const rng = new Rng(5);
  const data = new Dataset(rng.normals(w.n * 6), Float32Array.from({ length: w.n }, (_, i) => i % 3), w.n, 6, 1);

  // Both branches are real checks: where a python3 has torch (e.g. Debian's python3-torch), its
  // Fisher must match the float64 CPU path; where none has, the peer must say so rather than fail.
  it.each(['diag', 'full'] as const)('computes the same %s Fisher as the CPU path, or says why it is skipped', async (structure) => {
    const torch = findTorch();
    for (const formulation of ['batched', 'vmap'] as const) {
      const r = await torchPeer(formulation, 60).run({ ...w, structure }, model, data);
      if (typeof torch === 'string') {
        expect(r).toEqual({ skipped: torch });
        expect(torch).toMatch(/no python3 with torch/);
        continue;
      }
      if ('skipped' in r) throw new Error(`skipped: ${r.skipped}`);
      const F = await fisher(new CpuEngine(), model, data, { structure });
      const reference = structure === 'diag' ? F.diagonal() : (F as unknown as { values: Float64Array }).values;
      expect(relativeDifference(r.values, reference)).toBeLessThan(1e-5);
      expect(r.seconds).toBeGreaterThan(0);
      expect(r.note).toMatch(/BLAS .*, \d+ threads/);
    }
  }, 120_000);

  it.each(NETWORK_CASES.filter((c) => c.spec.likelihood.type === 'categorical'))('vmap(grad) and the batched unfold formulation on the network $name equal the CPU path, or say why they are skipped', async (c) => {
    const torch = findTorch();
    const net = caseModel(c, 8);
    const d = randomData(net, 9, 9);
    const reference = (await fisher(new CpuEngine(), net, d)).diagonal();
    for (const formulation of ['vmap', 'batched'] as const) {
      const r = await torchPeer(formulation, 60).run({ ...w, arch: 'cnn', n: d.n }, net, d);
      if (typeof torch === 'string') {
        expect(r).toEqual({ skipped: torch });
        continue;
      }
      if ('skipped' in r) throw new Error(`${formulation} skipped: ${r.skipped}`);
      expect(relativeDifference(r.values, reference), formulation).toBeLessThan(1e-5);
    }
  }, 120_000);

  it.each(NETWORK_CASES.filter((c) => c.spec.likelihood.type === 'categorical'))('K-FAC by the batched formulation on the network $name equals ours, or says why it is skipped', async (c) => {
    const torch = findTorch();
    const net = caseModel(c, 8);
    const d = randomData(net, 9, 9);
    const r = await torchPeer('batched', 60).run({ ...w, arch: 'cnn', n: d.n, structure: 'kfac' }, net, d);
    if (typeof torch === 'string') {
      expect(r).toEqual({ skipped: torch });
      return;
    }
    if ('skipped' in r) throw new Error(`skipped: ${r.skipped}`);
    expect(relativeDifference(r.values, resultValues(await fisher(new CpuEngine(), net, d, { structure: 'kfac' })))).toBeLessThan(1e-5);
    expect(await torchPeer('vmap', 60).run({ ...w, arch: 'cnn', n: d.n, structure: 'kfac' }, net, d)).toEqual({ skipped: 'the vmap formulation here computes diag and full' });
  }, 120_000);
});

describe('TF.js per-sample peer', () => {
  const w = { type: 'fisher' as const, name: '', arch: 'cnn' as const, widths: [], n: 0, kind: 'empirical' as const, structure: 'diag' as const };
  // The JavaScript peers are installed by the first `fisher bench` (bench/peers); a fresh clone has none.
  const installed = existsSync(join(peersDir(), 'node_modules', '@tensorflow', 'tfjs-backend-webgpu'));

  it('names what TF.js cannot express: grouped convolutions', () => {
    const grouped = NETWORK_CASES.find((c) => c.name.startsWith('conv2d: groups'))!;
    expect(tfUnsupported(caseModel(grouped, 1))).toBe('g1: TF.js has no grouped conv2d');
  });

  it.skipIf(!installed).each(NETWORK_CASES.filter((c) => c.spec.likelihood.type === 'categorical'))('the tf.grads loop on the network $name equals the CPU path, or says why TF.js cannot run it (needs bench/peers installed)', async (c) => {
    const net = caseModel(c, 8);
    const d = randomData(net, 5, 9);
    const r = await tfjsPerSamplePeer(gpu(), peersDir(), 60).run({ ...w, n: d.n }, net, d);
    const why = tfUnsupported(net);
    if (why) {
      expect(r).toEqual({ skipped: why });
      return;
    }
    if ('skipped' in r) throw new Error(`skipped: ${r.skipped}`);
    expect(relativeDifference(r.values, (await fisher(new CpuEngine(), net, d)).diagonal())).toBeLessThan(1e-5);
  }, 120_000);
});
