/**
 * Every operation of every structure (issue: what users do with a Fisher)
 * against its dense float64 definition, written out here from the dense
 * matrix each Fisher multiplies by (its columns F e_j): products, solves,
 * spectra, log-determinants, scaling, sums, merging shards, and the file
 * round trip. On the GPU and the CPU engines.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuEngine, CpuModel } from '../../src/engine/cpu.js';
import type { Engine } from '../../src/engine/engine.js';
import { fisher } from '../../src/fisher/estimate.js';
import { loadFisher } from '../../src/fisher/load.js';
import type { FisherOptions, FisherStructure } from '../../src/fisher/options.js';
import type { FisherMatrix } from '../../src/fisher/result.js';
import { symmetricEigen } from '../../src/linalg/eigen.js';
import { Rng } from '../../src/model/random.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { expectClose, relativeError } from '../helpers/compare.js';
import { randomData, randomModel } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const STRUCTURES: FisherStructure[] = ['diag', 'full', 'block', 'kfac', 'ekfac', 'lowrank'];
const dir = await mkdtemp(join(tmpdir(), 'fisher-ops-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** F from its products: column j is F e_j. */
function denseByProducts(F: FisherMatrix): Float64Array {
  const p = F.size;
  const out = new Float64Array(p * p);
  const e = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    e[j] = 1;
    const c = F.mv(e);
    e[j] = 0;
    for (let i = 0; i < p; i++) out[i * p + j] = c[i]!;
  }
  return out;
}

const matVec = (d: Float64Array, v: ArrayLike<number>) => {
  const p = v.length;
  return Float64Array.from({ length: p }, (_, i) => {
    let s = 0;
    for (let j = 0; j < p; j++) s += d[i * p + j]! * v[j]!;
    return s;
  });
};
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
/** ‖(D + δI) x − g‖ / ‖g‖. */
const residual = (d: Float64Array, x: Float64Array, g: ArrayLike<number>, damping: number) => norm(matVec(d, x).map((y, i) => y + damping * x[i]! - g[i]!)) / norm(g);

const options = (structure: FisherStructure): FisherOptions => ({ structure, ...(structure === 'lowrank' ? { rank: 6, seed: 3 } : {}) });

/** The cases: a sequence model with layer norm (K-FAC over positions, an unfactored layer), and a small convolution. */
const CASES = [NETWORK_CASES[0]!, NETWORK_CASES[1]!];
const ENGINES: { name: string; engine: () => Engine | ReturnType<typeof gpu> }[] = [
  { name: 'cpu', engine: () => new CpuEngine() },
  { name: 'gpu', engine: () => gpu() },
];

describe.each(CASES)('operations on $name', (c) => {
  const model = caseModel(c, 21);
  const data = randomData(model, c.n, 22);
  const p = model.parameterCount;
  const rng = new Rng(23);

  describe.each(ENGINES)('$name', ({ name, engine }) => {
    it.each(STRUCTURES)('%s: every operation against the dense matrix', async (structure) => {
      const F = await fisher(engine(), model, data, { ...options(structure), ...(name === 'gpu' ? { batchSize: c.batch } : {}) });
      const D = denseByProducts(F);
      const scaleOf = F.trace() / p;
      // The dense form: symmetric, and what toDense returns.
      expectClose(F.toDense(), D, { rtol: 1e-12, atol: 1e-15 * scaleOf }, 'toDense');
      for (let i = 0; i < p; i++) for (let j = 0; j < i; j++) expect(Math.abs(D[i * p + j]! - D[j * p + i]!)).toBeLessThanOrEqual(1e-12 * scaleOf + 1e-300);
      const v = Float64Array.from(rng.normals(p));
      // Reductions.
      expectClose(F.diagonal(), Float64Array.from({ length: p }, (_, i) => D[i * p + i]!), { rtol: 1e-12, atol: 1e-15 * scaleOf }, 'diagonal');
      expect(F.trace()).toBeCloseTo(Array.from({ length: p }, (_, i) => D[i * p + i]!).reduce((s, x) => s + x, 0), 10);
      expect(relativeError([F.frobeniusNorm()], [norm(D)])).toBeLessThan(1e-12);
      expect(relativeError([F.quadratic(v)], [v.reduce((s, x, i) => s + x * matVec(D, v)[i]!, 0)])).toBeLessThan(1e-12);
      // Solves: exact, by conjugate gradients.
      const damping = 1e-3 * scaleOf;
      const exact = F.solveWithReport(v, { damping });
      expect(exact).toMatchObject({ method: 'exact', damping, retries: 0, converged: true });
      expect(residual(D, exact.x, v, damping)).toBeLessThan(1e-9);
      const cg = F.solveWithReport(v, { damping, method: 'cg', tolerance: 1e-10 });
      expect(cg.converged).toBe(true);
      expect(cg.iterations).toBeGreaterThan(0);
      expect(residual(D, cg.x, v, damping)).toBeLessThan(1e-9);
      expect(cg.relativeResidual).toBeLessThan(1e-9);
      if (structure !== 'kfac') expect(() => F.solve(v, { damping, method: 'factored' })).toThrow(/π-damping/);
      expect(() => F.solve(v, { damping: -1 })).toThrow(/damping must be a finite number ≥ 0/);
      // The spectrum: the top eigenvalues of D, eigenvectors that D scales by them.
      const e = symmetricEigen(D, p);
      const k = 5;
      const top = F.eig({ k });
      const λ1 = e.values[0]!;
      expectClose(top.values, e.values.subarray(0, k), { rtol: 0, atol: 1e-8 * λ1 }, 'top eigenvalues');
      expect(top.method).toBe(['full', 'block'].includes(structure) ? 'lanczos' : 'exact');
      expect(top.converged).toBe(true);
      for (let j = 0; j < k; j++) {
        const u = top.vectors.subarray(j * p, (j + 1) * p);
        expect(norm(u)).toBeCloseTo(1, 10);
        expect(norm(matVec(D, u).map((y, i) => y - top.values[j]! * u[i]!))).toBeLessThan(1e-6 * λ1);
      }
      // log det(D + δI) from D's eigenvalues.
      const logdet = Array.from(e.values).reduce((s, x) => s + Math.log(x + damping), 0);
      expect(Math.abs(F.logdet({ damping }) - logdet)).toBeLessThan(1e-8 * Math.abs(logdet) + 1e-8);
      // Scaling.
      expectClose(F.scale(0.25).toDense(), D.map((x) => 0.25 * x), { rtol: 1e-12, atol: 1e-15 * scaleOf }, 'scale');
      expect(() => F.scale(-1)).toThrow(/≥ 0/);
      // The file round trip, float64: the same operator and the same record.
      const path = join(dir, `${c.batch}-${name}-${structure}.safetensors`);
      await F.save(path, { dtype: 'F64' });
      const back = await loadFisher(path);
      expect(back.info).toEqual(F.info);
      expect(back.layout.entries).toEqual(F.layout.entries.map((x) => ({ ...x })));
      // Exactly, but for a low-rank Fisher, whose eigenvectors are re-orthonormalised on loading (rounding).
      expectClose(denseByProducts(back), D, structure === 'lowrank' ? { rtol: 1e-10, atol: 1e-12 * scaleOf } : { rtol: 1e-15, atol: 0 }, 'loaded');
    });
  });

  it.each(STRUCTURES)('%s: Fishers of shards merge into the Fisher of the whole data, or are refused', async (structure) => {
    const cpu = new CpuEngine();
    const o = options(structure);
    const whole = await fisher(cpu, model, data, o);
    const cut = Math.floor(c.n / 3);
    const shards = await Promise.all([data.slice(0, cut), data.slice(cut, c.n)].map((d) => fisher(cpu, model, d, o)));
    if (structure === 'ekfac' || structure === 'lowrank') {
      expect(() => shards[0]!.merge([shards[1]!])).toThrow(/do not merge/);
      return;
    }
    const merged = shards[0]!.merge([shards[1]!]);
    expect(merged.info.n).toBe(c.n);
    expectClose(merged.toDense(), whole.toDense(), { rtol: 1e-12, atol: 1e-15 * (whole.trace() / p) }, 'merged');
    for (const reduction of ['sum'] as const) {
      const [a, b] = await Promise.all([data.slice(0, cut), data.slice(cut, c.n)].map((d) => fisher(cpu, model, d, { ...o, reduction })));
      const all = await fisher(cpu, model, data, { ...o, reduction });
      expectClose(a!.merge([b!]).toDense(), all.toDense(), { rtol: 1e-12, atol: 1e-15 * (all.trace() / p) }, 'merged sums');
      expect(() => a!.merge([shards[1]!])).toThrow(/reductions differ/);
    }
  });

  it.each(STRUCTURES)('%s: the sum of two Fishers as matrices, where the structure holds it', async (structure) => {
    const cpu = new CpuEngine();
    const a = await fisher(cpu, model, data, options(structure));
    const b = await fisher(cpu, model, randomData(model, c.n, 24), options(structure));
    if (structure === 'kfac' || structure === 'ekfac') {
      expect(() => a.add(b)).toThrow(/not a (kfac|ekfac) Fisher/);
      return;
    }
    const sum = a.add(b);
    expect(sum.info.n).toBe(2 * c.n);
    const db = b.toDense();
    const ref = a.toDense().map((x, i) => x + db[i]!);
    expectClose(sum.toDense(), ref, { rtol: 1e-10, atol: 1e-12 * (a.trace() / p) }, 'sum');
  });
});

describe('solves at tiny damping on singular Fishers (N < P)', () => {
  const c = NETWORK_CASES[0]!;
  const model = caseModel(c, 31);
  const few = randomData(model, 2, 32);
  const p = model.parameterCount;

  it.each(STRUCTURES)('%s: at 1e-8 of the trace, a correct answer or a clear error, never NaN', async (structure) => {
    const F = await fisher(gpu(), model, few, options(structure));
    const D = denseByProducts(F);
    const g = Float64Array.from(new Rng(33).normals(p));
    const damping = 1e-8 * F.trace();
    for (const method of ['exact', 'cg'] as const) {
      let report;
      try {
        report = F.solveWithReport(g, { damping, method, maxIterations: 5000 });
      } catch (e) {
        expect((e as Error).message).toMatch(/damping|positive definite/);
        continue;
      }
      expect(report.x.every(Number.isFinite)).toBe(true);
      if (method === 'exact') {
        // Solve then multiply gives the input back.
        expect(residual(D, report.x, g, report.damping)).toBeLessThan(1e-4);
      } else if (report.converged) {
        expect(residual(D, report.x, g, damping)).toBeLessThan(1e-4);
      }
    }
  });
});

describe('the quadratic form is the local KL divergence (the seed identity), through Fisher objects', () => {
  // The exact Fisher (the true one, expectations over y taken exactly), mean over the data.
  const model = randomModel([4, 5, 3], 'tanh', { type: 'categorical' }, 61);
  const data = randomData(model, 9, 62);
  const p = model.parameterCount;
  const theta = Float64Array.from(model.parameters());
  const base = new CpuModel(model, theta);
  /** KL(p_θ ‖ p_θ+εd) averaged over the data's inputs, in float64. */
  const kl = (d: ArrayLike<number>, eps: number) => {
    const moved = new CpuModel(model, theta.map((t, i) => t + eps * d[i]!));
    let s = 0;
    for (let n = 0; n < data.n; n++) {
      const x = data.x.subarray(n * model.inputs, (n + 1) * model.inputs);
      for (const { y, p: prob } of model.likelihood.outcomes!(base.output(base.trace(x)))) s += prob * (moved.sampleLoss(x, y) - base.sampleLoss(x, y));
    }
    return s / data.n;
  };

  it('quadratic(d) = 2 KL / ε² to O(ε), for full and for block on a one-layer-block direction', async () => {
    const F = await fisher(new CpuEngine(), model, data, { kind: 'exact', structure: 'full' });
    const d = Float64Array.from(new Rng(63).normals(p));
    const eps = 1e-3;
    expect(Math.abs((2 * kl(d, eps)) / (eps * eps) / F.quadratic(d) - 1)).toBeLessThan(1e-2);
    // Within one layer, the block Fisher is the full one.
    const B = await fisher(new CpuEngine(), model, data, { kind: 'exact', structure: 'block' });
    const inFirst = d.map((x, i) => (i < model.layout.layers[0]!.size ? x : 0));
    expect(Math.abs((2 * kl(inFirst, eps)) / (eps * eps) / B.quadratic(inFirst) - 1)).toBeLessThan(1e-2);
  });

  it('the top eigenvector is the direction of steepest KL growth', async () => {
    const F = await fisher(new CpuEngine(), model, data, { kind: 'exact', structure: 'full' });
    const { values, vectors } = F.eig({ k: 1 });
    const u = vectors.subarray(0, p);
    const eps = 1e-3;
    const along = kl(u, eps);
    expect(Math.abs((2 * along) / (eps * eps) / values[0]! - 1)).toBeLessThan(1e-2);
    const rng = new Rng(64);
    for (let r = 0; r < 20; r++) {
      const v = Float64Array.from(rng.normals(p));
      const norm = Math.hypot(...v);
      expect(kl(v.map((x) => x / norm), eps)).toBeLessThan(along);
    }
  });
});
