/**
 * Fishers from what callers already have: per-sample gradients
 * (fromGradients, against the estimator on the same model and data) and
 * Jacobians with a Gaussian noise model (forecast, against closed forms).
 */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../../src/engine/cpu.js';
import { DATA_LABELS } from '../../src/engine/engine.js';
import { fisher } from '../../src/fisher/estimate.js';
import { forecast } from '../../src/fisher/forecast.js';
import { fromGradients, type GradientChunk } from '../../src/fisher/gradients.js';
import { caseModel, NETWORK_CASES } from '../helpers/cases.js';
import { expectClose, expectRelativeError } from '../helpers/compare.js';
import { randomData } from '../helpers/fixtures.js';
import { useGpu } from '../helpers/gpu.js';

describe('fromGradients', async () => {
  const c = NETWORK_CASES[0]!;
  const model = caseModel(c, 41);
  const data = randomData(model, c.n, 42);
  const p = model.parameterCount;
  const cpu = new CpuEngine();
  const loaded = await cpu.load(model);
  const g = Float64Array.from(await loaded.gradients(data, DATA_LABELS));
  loaded.release();
  /** The gradients in chunks of 5, 1 and the rest: sizes that do not divide N. */
  const chunks: GradientChunk[] = [g.subarray(0, 5 * p), g.subarray(5 * p, 6 * p), Float32Array.from(g.subarray(6 * p))];
  const exactChunks = [g.subarray(0, 5 * p), g.subarray(5 * p, 6 * p), g.subarray(6 * p)];

  it.each(['diag', 'full', 'block'] as const)('%s equals the estimator on the same gradients', async (structure) => {
    const F = await fromGradients(exactChunks, p, { structure, layout: model.layout });
    const ref = await fisher(cpu, model, data, { structure });
    expect(F.info).toMatchObject({ kind: 'empirical', structure, n: c.n, reduction: 'mean' });
    expectClose(F.toDense(), ref.toDense(), { rtol: 1e-12, atol: 1e-16 }, structure);
    // float32 chunks: float32 inputs, float64 sums.
    expectRelativeError((await fromGradients(chunks, p, { structure, layout: model.layout })).toDense(), ref.toDense(), 1e-6, `${structure} from float32`);
  });

  it('block with sizes given, sum reduction, from an async stream', async () => {
    async function* stream() {
      for (const ch of exactChunks) yield ch;
    }
    const sizes = [3, p - 10, 7];
    const F = await fromGradients(stream(), p, { structure: 'block', blocks: sizes, reduction: 'sum' });
    const full = (await fisher(cpu, model, data, { structure: 'full', reduction: 'sum' })).toDense();
    const D = F.toDense();
    let at = 0;
    for (const size of sizes) {
      for (let i = at; i < at + size; i++) for (let j = 0; j < p; j++) expect(D[i * p + j]).toBeCloseTo(j >= at && j < at + size ? full[i * p + j]! : 0, 12);
      at += size;
    }
    await expect(fromGradients(exactChunks, p, { structure: 'block', blocks: [p - 1] })).rejects.toThrow(/sum to/);
  });

  it('lowrank with k ≥ N reproduces full; a one-shot stream is refused with the reason', async () => {
    const F = await fromGradients(exactChunks, p, { structure: 'lowrank', rank: c.n + 1, layout: model.layout });
    const full = await fisher(cpu, model, data, { structure: 'full' });
    expectRelativeError(F.toDense(), full.toDense(), 1e-9, 'lowrank k ≥ N');
    expect(F.info.lowrank?.converged).toBe(true);
    function* once() {
      for (const ch of exactChunks) yield ch;
    }
    const gen = once();
    await expect(fromGradients(gen, p, { structure: 'lowrank', rank: 3 })).rejects.toThrow(/once per pass/);
    await expect(fromGradients([new Float64Array(p + 1)], p, { structure: 'diag' })).rejects.toThrow(/not a multiple of P/);
    await expect(fromGradients([], p, { structure: 'diag' })).rejects.toThrow(/no gradients/);
  });
});

describe('fromGradients with chunks on the device', () => {
  const gpu = useGpu();
  const c = NETWORK_CASES[0]!;
  const model = caseModel(c, 43);
  const data = randomData(model, c.n, 44);
  const p = model.parameterCount;

  it.each(['full', 'block', 'diag', 'lowrank'] as const)('%s: GPU buffers give what the same rows on the host give', async (structure) => {
    const cpu = await new CpuEngine().load(model);
    const g = Float32Array.from(await cpu.gradients(data, DATA_LABELS));
    cpu.release();
    // Chunks of 4, 1 and the rest: two on the device, one on the host.
    const cuts = [0, 4, 5, c.n];
    const host = cuts.slice(1).map((end, k) => g.subarray(cuts[k]! * p, end * p));
    const buffers = await Promise.all(host.slice(0, 2).map((h, k) => gpu().storage(h.byteLength, `gradients ${k}`, h)));
    try {
      const mixed = [...buffers.map((buffer, k) => ({ buffer, rows: cuts[k + 1]! - cuts[k]! })), host[2]!];
      const options = { structure, layout: model.layout, ...(structure === 'lowrank' ? { rank: c.n + 1 } : {}) };
      const F = await fromGradients(mixed, p, { ...options, device: gpu() });
      const ref = await fromGradients(host, p, options);
      expect(F.info.n).toBe(c.n);
      expectRelativeError(F.toDense(), ref.toDense(), structure === 'diag' ? 1e-12 : 1e-6, `${structure} from device chunks`);
      if (structure === 'full' || structure === 'block') expect(F.info.backend).toMatch(/device Gram/);
      // Without the device, a GPU buffer is refused with the reason.
      await expect(fromGradients(mixed, p, options)).rejects.toThrow(/pass the device that holds it/);
    } finally {
      for (const b of buffers) gpu().buffers.release(b);
    }
  });

  it('a non-finite gradient in a device chunk is an error naming its column', async () => {
    const rows = new Float32Array(3 * p).fill(0.5);
    rows[p + 7] = Number.NaN;
    const buffer = await gpu().storage(rows.byteLength, 'gradients with NaN', rows);
    try {
      await expect(fromGradients([{ buffer, rows: 3 }], p, { structure: 'full', device: gpu() })).rejects.toThrow(/non-finite value in column 7/);
      await expect(fromGradients([{ buffer, rows: 3 }], p, { structure: 'diag', device: gpu() })).rejects.toThrow(/NaN at row 1, column 7/);
    } finally {
      gpu().buffers.release(buffer);
    }
  });
});

describe('forecast', () => {
  // A straight line y = a + b t observed at t = 0…9 with noise σ: F = (1/σ²) [[N, Σt], [Σt, Σt²]].
  const t = Array.from({ length: 10 }, (_, i) => i);
  const sigma = 0.5;
  const jacobian = Float64Array.from(t.flatMap((ti) => [1, ti]));

  it('a straight-line fit: the Fisher and both errors in closed form', () => {
    const r = forecast(jacobian, 10, 1, 2, { sigma: [sigma] });
    const [n, st, stt] = [10, t.reduce((s, x) => s + x, 0), t.reduce((s, x) => s + x * x, 0)];
    expectClose(r.fisher, [n, st, st, stt].map((x) => x / sigma ** 2), { rtol: 1e-14 }, 'F');
    const det = n * stt - st * st;
    expectClose(r.marginalErrors, [Math.sqrt((sigma ** 2 * stt) / det), Math.sqrt((sigma ** 2 * n) / det)], { rtol: 1e-13 }, 'marginalised');
    expectClose(r.conditionalErrors, [sigma / Math.sqrt(n), sigma / Math.sqrt(stt)], { rtol: 1e-14 }, 'conditional');
    // Marginalising over the other parameter never shrinks an error.
    for (let i = 0; i < 2; i++) expect(r.marginalErrors[i]!).toBeGreaterThanOrEqual(r.conditionalErrors[i]!);
  });

  it('a full noise covariance: diagonal equals sigma; correlated equals Σ Jᵀ Σ⁻¹ J written out', () => {
    const j2 = Float64Array.from(t.flatMap((ti) => [1, ti, 0, 1, ti * ti, 2]));
    const diag = forecast(j2, 10, 2, 3, { sigma: [0.5, 2] });
    const cov = forecast(j2, 10, 2, 3, { covariance: [0.25, 0, 0, 4] });
    expectClose(cov.fisher, diag.fisher, { rtol: 1e-13 }, 'diagonal covariance');
    const s = [1, 0.6, 0.6, 2];
    const det = s[0]! * s[3]! - s[1]! * s[2]!;
    const inv = [s[3]! / det, -s[1]! / det, -s[2]! / det, s[0]! / det];
    const ref = new Float64Array(9);
    for (let n = 0; n < 10; n++) {
      const J = (r: number, q: number) => j2[(n * 2 + r) * 3 + q]!;
      for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) for (let r = 0; r < 2; r++) for (let q = 0; q < 2; q++) ref[a * 3 + b]! += J(r, a) * inv[r * 2 + q]! * J(q, b);
    }
    expectClose(forecast(j2, 10, 2, 3, { covariance: s }).fisher, ref, { rtol: 1e-12 }, 'correlated');
  });

  it('refuses what it cannot answer, saying why', () => {
    // Every point at the same t: a and b are not separately constrained.
    expect(() => forecast(Float64Array.from(t.flatMap(() => [1, 3])), 10, 1, 2, { sigma: [1] })).toThrow(/singular .* do not constrain every parameter/);
    expect(() => forecast(jacobian, 10, 1, 2, { sigma: [0] })).toThrow(/positive/);
    expect(() => forecast(jacobian, 10, 1, 2, { covariance: [1, 2, 3, 4] })).toThrow(/entries/);
    expect(() => forecast(jacobian, 9, 1, 2, { sigma: [1] })).toThrow(/N·C·P/);
  });
});
