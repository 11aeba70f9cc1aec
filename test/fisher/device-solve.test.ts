/**
 * The device Cholesky of full and block Fishers (issue: solves "on the GPU
 * where the matrix is large"): against the host's float64 Cholesky on
 * random Fishers from gradients, with panels that do not divide P, blocks
 * on and off the device, a Fisher in a file, and singular Fishers at tiny
 * damping (a correct answer or a clear error, never NaN).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { choleskyOnDevice, solveOnDevice } from '../../src/fisher/device-solve.js';
import { fromGradients } from '../../src/fisher/gradients.js';
import { openFisherFile } from '../../src/fisher/load.js';
import type { FisherMatrix } from '../../src/fisher/result.js';
import { StoredFisher } from '../../src/fisher/structures/spill.js';
import { NotPositiveDefiniteError } from '../../src/linalg/cholesky.js';
import { Rng } from '../../src/model/random.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();
const dir = await mkdtemp(join(tmpdir(), 'fisher-device-solve-'));
afterAll(() => rm(dir, { recursive: true, force: true }));

/** Gradients [n, p] with columns of unequal scales (a spread spectrum, as Fishers have). */
function gradients(n: number, p: number, seed: number): Float64Array {
  const rng = new Rng(seed);
  return Float64Array.from({ length: n * p }, (_, i) => rng.normal() * (1 + (i % p) / 10));
}
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
const residual = (F: FisherMatrix, x: Float64Array, g: ArrayLike<number>, damping: number) => norm(F.mv(x).map((y, i) => y + damping * x[i]! - g[i]!)) / norm(g);
const vector = (p: number, seed: number) => {
  const rng = new Rng(seed);
  return Float64Array.from({ length: p }, () => rng.normal());
};

describe('Cholesky on the device', () => {
  it('full: panels that do not divide P; the refined answer is the host float64 one', async () => {
    const p = 300;
    const F = await fromGradients([gradients(400, p, 1)], p, { structure: 'full' });
    const g = vector(p, 2);
    const damping = 1e-3 * (F.trace() / p);
    const factor = await choleskyOnDevice(gpu(), F, { damping, panel: 64, minDeviceSize: 1 });
    const r = factor.solve(g);
    expect(r.deviceBlocks).toBe(1);
    expect(r.converged).toBe(true);
    expect(r.relativeResidual).toBeLessThanOrEqual(1e-10);
    expect(residual(F, r.x, g, damping)).toBeLessThanOrEqual(1e-10);
    const host = F.solve(g, { damping });
    expect(norm(r.x.map((v, i) => v - host[i]!)) / norm(host)).toBeLessThan(1e-8);
    // float32's factor is already a good preconditioner here: a few refinements.
    expect(r.refinements).toBeGreaterThan(0);
    expect(r.refinements).toBeLessThanOrEqual(6);
    // The log-determinant of the float32-accurate factor.
    const logdet = F.logdet({ damping });
    expect(Math.abs(factor.logdet() - logdet) / Math.abs(logdet)).toBeLessThan(1e-5);
  });

  it('block: large blocks on the device, small ones on the host', async () => {
    const p = 150 + 7 + 90;
    const F = await fromGradients([gradients(200, p, 3)], p, { structure: 'block', blocks: [150, 7, 90] });
    const g = vector(p, 4);
    const damping = 1e-4 * (F.trace() / p);
    const r = await solveOnDevice(gpu(), F, g, { damping, panel: 32, minDeviceSize: 50 });
    expect(r.deviceBlocks).toBe(2);
    expect(r.converged).toBe(true);
    expect(residual(F, r.x, g, damping)).toBeLessThanOrEqual(1e-10);
  });

  it('a full Fisher in a file: read in slices of rows, refined against the file', async () => {
    const p = 97;
    const F = await fromGradients([gradients(150, p, 5)], p, { structure: 'full' });
    const path = join(dir, 'full.safetensors');
    await F.save(path);
    const stored = await StoredFisher.open(await openFisherFile(path), [{ tensor: 'fisher', offset: 0, size: p }]);
    const g = vector(p, 6);
    const damping = 1e-3 * (F.trace() / p);
    const r = await solveOnDevice(gpu(), stored, g, { damping, panel: 40, minDeviceSize: 1 });
    expect(r.converged).toBe(true);
    expect(residual(stored, r.x, g, damping)).toBeLessThanOrEqual(1e-10);
  });

  it('singular Fishers (N < P) at damping down to 1e-8 of the trace: correct, or a clear error, never NaN', async () => {
    const p = 120;
    const F = await fromGradients([gradients(30, p, 7)], p, { structure: 'full' });
    const g = vector(p, 8);
    for (const scale of [1e-2, 1e-5, 1e-8]) {
      const damping = scale * (F.trace() / p);
      const r = await solveOnDevice(gpu(), F, g, { damping, panel: 32, minDeviceSize: 1 });
      expect(r.x.every(Number.isFinite)).toBe(true);
      // Near 1/ε₃₂ the float32 factor stops helping and the host factors F in float64: backward stable, not 1e-10.
      expect(residual(F, r.x, g, r.damping)).toBeLessThanOrEqual(r.converged ? 1e-10 : 1e-6);
      expect(r.converged).toBe(r.relativeResidual! <= 1e-10);
      expect(r.damping).toBeGreaterThanOrEqual(damping);
    }
    // Without retries, zero damping on a singular F: a clear error.
    await expect(solveOnDevice(gpu(), F, g, { damping: 0, retry: false, minDeviceSize: 1 })).rejects.toThrow(NotPositiveDefiniteError);
  });

  it('refuses structures that are not dense, pointing to their own solve', async () => {
    const F = await fromGradients([gradients(10, 8, 9)], 8, { structure: 'diag' });
    await expect(solveOnDevice(gpu(), F, vector(8, 1))).rejects.toThrow(/through its factors on the host/);
  });
});
