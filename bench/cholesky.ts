/**
 * The damped solve of a full Fisher, (F + δI) x = g, by the host's float64
 * Cholesky and by the device's blocked Cholesky with float64 refinement
 * (src/fisher/device-solve.ts), at several P. F is the Fisher of random
 * gradients (N = P + P/2, columns of unequal scales), δ = 1e-3 · tr F / P.
 * Prints one line per P and writes the numbers to the JSON file named by the
 * first argument. A factorisation is P³/3 FLOPs.
 *
 *   node tools/run-ts.mjs bench/cholesky.ts bench/results/cholesky.json 1024 2048 4096
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { choleskyOnDevice } from '../src/fisher/device-solve.js';
import { fromGradients } from '../src/fisher/gradients.js';
import { openDevice } from '../src/gpu/device.js';
import { Rng } from '../src/model/random.js';

const out = process.argv[2] ?? 'bench/results/cholesky.json';
const sizes = process.argv.slice(3).map(Number);
const gpu = await openDevice();
const rows: Record<string, unknown>[] = [];
const norm = (v: ArrayLike<number>) => Math.sqrt(Array.from(v).reduce((s, x) => s + x * x, 0));
for (const p of sizes.length ? sizes : [1024, 2048]) {
  const rng = new Rng(p);
  const n = p + p / 2;
  const grads = Float64Array.from({ length: n * p }, (_, i) => rng.normal() * (1 + (i % p) / 10));
  const F = await fromGradients([grads], p, { structure: 'full' });
  const g = Float64Array.from({ length: p }, () => rng.normal());
  const damping = (1e-3 * F.trace()) / p;
  const flops = p ** 3 / 3;
  // Once to build the pipelines (not timed), then timed.
  await choleskyOnDevice(gpu, F, { damping, minDeviceSize: 1 });
  let t = performance.now();
  const factor = await choleskyOnDevice(gpu, F, { damping, minDeviceSize: 1 });
  const deviceFactor = (performance.now() - t) / 1000;
  t = performance.now();
  const r = factor.solve(g);
  const deviceSolve = (performance.now() - t) / 1000;
  t = performance.now();
  const host = F.solve(g, { damping });
  const hostSeconds = (performance.now() - t) / 1000;
  const difference = norm(r.x.map((v, i) => v - host[i]!)) / norm(host);
  const row = { p, hostSeconds, deviceFactor, deviceSolve, refinements: r.refinements, relativeResidual: r.relativeResidual, differenceFromHost: difference, hostGflops: flops / hostSeconds / 1e9, deviceGflops: flops / deviceFactor / 1e9 };
  rows.push(row);
  console.log(
    `P = ${p}: host ${hostSeconds.toFixed(2)} s (${row.hostGflops.toFixed(2)} GFLOP/s); device factor ${deviceFactor.toFixed(2)} s (${row.deviceGflops.toFixed(1)} GFLOP/s) + solve ${deviceSolve.toFixed(2)} s, ${r.refinements} refinements, residual ${r.relativeResidual!.toExponential(1)}, ‖x − x_host‖/‖x_host‖ ${difference.toExponential(1)}`,
  );
}
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify({ device: gpu.describe(), date: new Date().toISOString(), rows }, null, 2));
gpu.dispose();
