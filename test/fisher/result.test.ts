/** The Fisher objects' operations, against dense float64 linear algebra written out here. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { fisher } from '../../src/fisher/estimate.js';
import { DiagonalFisher } from '../../src/fisher/structures/diag.js';
import { DenseFisher } from '../../src/fisher/structures/full.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { Rng } from '../../src/model/random.js';
import { expectClose } from '../helpers/compare.js';
import { randomData, randomModel } from '../helpers/fixtures.js';

const model = randomModel([4, 3, 2], 'tanh', { type: 'categorical' }, 1);
const data = randomData(model, 40, 2);
const P = model.parameterCount;
const rng = new Rng(3);
const v = Float64Array.from(rng.normals(P));

describe('Fisher operations', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('dense: mv, trace, solve with damping, EWC penalty and gradient', async () => {
    const F = (await fisher(new CpuEngine(), model, data, { structure: 'full' })) as DenseFisher;
    const dense = F.values;
    const mv = Array.from({ length: P }, (_, r) => v.reduce((s, x, c) => s + dense[r * P + c]! * x, 0));
    expectClose(F.mv(v), mv, { rtol: 1e-13, atol: 1e-15 }, 'mv');
    expect(F.trace()).toBeCloseTo(Array.from({ length: P }, (_, i) => dense[i * P + i]!).reduce((a, b) => a + b), 12);
    const damping = 1e-3;
    const x = F.solve(v, { damping });
    const back = F.mv(x).map((y, i) => y + damping * x[i]!);
    expectClose(back, v, { rtol: 1e-8, atol: 1e-10 }, '(F + λI) x = v');
    const theta = rng.normals(P);
    const star = rng.normals(P);
    const d = Float64Array.from(theta, (t, i) => t - star[i]!);
    const Fd = F.mv(d);
    expect(F.ewcPenalty(theta, star, 2)).toBeCloseTo(d.reduce((s, di, i) => s + di * Fd[i]!, 0), 10);
    expectClose(F.ewcGradient(theta, star, 2), Fd.map((y) => 2 * y), { rtol: 1e-13 }, 'EWC gradient');
    // Softmax output gradients sum to zero over the classes, so F is singular without damping:
    // refused where retries are off, else solved at a larger damping, and the report says which.
    expect(() => F.solve(v, { retry: false })).toThrow(/not positive definite/);
    const r = F.solveWithReport(v);
    expect(r.retries).toBeGreaterThan(0);
    expect(r.damping).toBeGreaterThan(0);
    expect(r.x.every(Number.isFinite)).toBe(true);
    // Near-singular in float64 (condition about λ₁/δ): the residual, normwise, is small.
    const residual = F.mv(r.x).map((y, i) => y + r.damping * r.x[i]! - v[i]!);
    expect(Math.hypot(...residual) / Math.hypot(...v)).toBeLessThan(1e-4);
  });

  it('diagonal: the EWC penalty is (λ/2) Σ F_i (θ_i − θ*_i)², and solve divides', async () => {
    const F = (await fisher(new CpuEngine(), model, data)) as DiagonalFisher;
    const theta = rng.normals(P);
    const star = rng.normals(P);
    const diag = F.diagonal();
    expect(F.ewcPenalty(theta, star, 3)).toBeCloseTo(1.5 * diag.reduce((s, f, i) => s + f * (theta[i]! - star[i]!) ** 2, 0), 12);
    expectClose(F.solve(v, { damping: 0.1 }), v.map((x, i) => x / (diag[i]! + 0.1)), { rtol: 1e-14 }, 'solve');
    expect(() => F.mv(new Float64Array(P + 1))).toThrow(/length/);
  });

  it('refuses a full Fisher too large for host memory, before any work', async () => {
    const big = randomModel([20000, 1], 'identity', { type: 'gaussian', sigma: 1 }, 1);
    await expect(fisher(new CpuEngine(), big, randomData(big, 1, 1), { structure: 'full' })).rejects.toThrow(/full Fisher of P = 20001 parameters .* use structure "diag"/);
  });

  it('saves the tensors and metadata of DESIGN.md §4', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fisher-out-'));
    dirs.push(dir);
    const diag = await fisher(new CpuEngine(), model, data);
    await diag.save(join(dir, 'd.safetensors'));
    const d = await readSafetensors(join(dir, 'd.safetensors'));
    expect([...d.tensors.keys()]).toEqual(['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
    expect(d.tensors.get('fc1.weight')!.shape).toEqual([3, 4]);
    expect(d.metadata).toMatchObject({ kind: 'empirical', structure: 'diag', reduction: 'mean', n: '40', samples: '1', seed: 'none' });
    const full = await fisher(new CpuEngine(), model, data, { structure: 'full' });
    await full.save(join(dir, 'f.safetensors'), { dtype: 'F64' });
    const f = await readSafetensors(join(dir, 'f.safetensors'));
    expect(f.tensors.get('fisher')).toMatchObject({ dtype: 'F64', shape: [P, P] });
    expectClose(f.tensors.get('fisher')!.data as Float64Array, (full as DenseFisher).values, { rtol: 0 }, 'F64 round trip');
  });
});
