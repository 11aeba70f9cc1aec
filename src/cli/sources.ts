/**
 * Fisher matrices from what callers already have: `fisher gradients`
 * (per-sample gradients g [N, P]) and `fisher forecast` (Jacobians
 * J [N, C, P] with a Gaussian noise model). Both write Fisher files every
 * other command reads.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { fromGradients, type GradientOptions } from '../fisher/gradients.js';
import { forecast, type ForecastNoise } from '../fisher/forecast.js';
import { fisherMetadata, type FileDtype, type FisherInfo } from '../fisher/result.js';
import { DTYPES } from '../io/dtypes.js';
import { readSafetensors, readSafetensorsHeader, writeSafetensors, type TensorEntry } from '../io/safetensors.js';
import { InputError } from '../layers/errors.js';
import { tensorLayout } from '../model/layout.js';
import { Network } from '../model/network.js';
import type { Reduction } from '../fisher/options.js';
import { readSpec } from './plan.js';

/** The one tensor `name` of a file (float32 or float64), and where its data starts. */
async function tensorEntry(path: string, name: string, rank: number): Promise<{ entry: TensorEntry; start: number }> {
  const header = await readSafetensorsHeader(path);
  const entry = header.entries.find((e) => e.name === name) ?? (header.entries.length === 1 ? header.entries[0] : undefined);
  if (!entry) throw new InputError(`${path}: no tensor "${name}" (it holds ${header.entries.map((e) => e.name).join(', ') || 'none'})`);
  if (entry.shape.length !== rank) throw new InputError(`${path}: tensor "${entry.name}" is [${entry.shape}], expected ${rank} dimensions`);
  if (entry.dtype !== 'F32' && entry.dtype !== 'F64') throw new InputError(`${path}: tensor "${entry.name}" is ${entry.dtype}, expected F32 or F64`);
  return { entry, start: header.dataOffset + entry.begin };
}

/** Rows [from, to) of a [N, P] tensor in a file. */
function readRows(path: string, start: number, entry: TensorEntry, from: number, to: number): Float32Array | Float64Array {
  const p = entry.shape[1]!;
  const size = DTYPES[entry.dtype as 'F32' | 'F64'].bytes;
  const bytes = new Uint8Array((to - from) * p * size);
  const fd = openSync(path, 'r');
  try {
    readSync(fd, bytes, 0, bytes.length, start + from * p * size);
  } finally {
    closeSync(fd);
  }
  return entry.dtype === 'F64' ? new Float64Array(bytes.buffer) : new Float32Array(bytes.buffer);
}

export async function gradientsCommand(a: { in: string; structure: GradientOptions['structure']; blocks?: number[]; model?: string; reduction: Reduction; rank?: number; passes?: number; out: string; dtype: FileDtype; chunk: number }): Promise<void> {
  const { entry, start } = await tensorEntry(a.in, 'g', 2);
  const [n, p] = entry.shape as [number, number];
  const layout = a.model ? Network.random(await readSpec(a.model), 0).layout : tensorLayout([{ name: 'theta', shape: [p] }]);
  if (layout.total !== p) throw new InputError(`${a.in}: the gradients have P = ${p} columns, the model ${a.model} has ${layout.total} parameters`);
  // Chunks of rows read from the file as needed: the gradients need not fit in memory (lowrank reads them once per pass).
  const rows = Math.max(1, Math.min(n, a.chunk, Math.floor(2 ** 26 / p)));
  const source = function* () {
    for (let r = 0; r < n; r += rows) yield readRows(a.in, start, entry, r, Math.min(n, r + rows));
  };
  const t0 = performance.now();
  const F = await fromGradients(source, p, {
    structure: a.structure,
    layout,
    reduction: a.reduction,
    ...(a.blocks ? { blocks: a.blocks } : {}),
    ...(a.rank === undefined ? {} : { rank: a.rank }),
    ...(a.passes === undefined ? {} : { passes: a.passes }),
  });
  await F.save(a.out, { dtype: a.dtype });
  process.stdout.write(`wrote ${a.out}: ${a.structure} Fisher of ${n} gradients, P = ${p}, trace ${F.trace().toPrecision(6)}, ${((performance.now() - t0) / 1000).toFixed(2)} s${F.info.lowrank ? ` (${F.info.lowrank.passes} passes${F.info.lowrank.converged ? '' : ', NOT converged'})` : ''}\n`);
}

export async function forecastCommand(a: { jacobian: string; noise: string; out: string; dtype: FileDtype; json: boolean }): Promise<void> {
  const { tensors: jt } = await readSafetensors(a.jacobian);
  const j = jt.get('J') ?? (jt.size === 1 ? [...jt.values()][0] : undefined);
  if (!j) throw new InputError(`${a.jacobian}: no tensor "J" [N, C, P]`);
  if (j.shape.length !== 3) throw new InputError(`${a.jacobian}: the Jacobian is [${j.shape}], expected [N, C, P]`);
  const [n, c, p] = j.shape as [number, number, number];
  const { tensors: nt } = await readSafetensors(a.noise);
  const t = nt.get('sigma') ?? nt.get('covariance') ?? (nt.size === 1 ? [...nt.values()][0] : undefined);
  if (!t) throw new InputError(`${a.noise}: no noise tensor: "sigma" [C] (standard deviations) or "covariance" [C, C]`);
  let noise: ForecastNoise;
  if (t.shape.length === 1 && t.shape[0] === c) noise = { sigma: Float64Array.from(t.data as Float32Array) };
  else if (t.shape.length === 2 && t.shape[0] === c && t.shape[1] === c) noise = { covariance: Float64Array.from(t.data as Float32Array) };
  else throw new InputError(`${a.noise}: the noise is [${t.shape}]; for C = ${c} outputs give standard deviations [${c}] or a covariance [${c}, ${c}]`);
  const r = forecast(j.data as Float32Array, n, c, p, noise);
  const layout = tensorLayout([{ name: 'theta', shape: [p] }]);
  const info: FisherInfo = { kind: 'exact', structure: 'full', reduction: 'sum', n, samples: 1, seed: undefined, backend: 'forecast (host, float64)' };
  const cast = (x: Float64Array) => (a.dtype === 'F64' ? x : Float32Array.from(x));
  await writeSafetensors(
    a.out,
    [
      ['fisher', { dtype: a.dtype, shape: [p, p], data: cast(r.fisher) }],
      ['marginal_errors', { dtype: a.dtype, shape: [p], data: cast(r.marginalErrors) }],
      ['conditional_errors', { dtype: a.dtype, shape: [p], data: cast(r.conditionalErrors) }],
    ],
    { ...fisherMetadata(info, layout), noise: 'sigma' in noise ? 'independent (standard deviations)' : 'covariance' },
  );
  if (a.json) {
    process.stdout.write(`${JSON.stringify({ marginalErrors: Array.from(r.marginalErrors), conditionalErrors: Array.from(r.conditionalErrors) })}\n`);
    return;
  }
  const lines = [`forecast from ${n} points × ${c} outputs, P = ${p}:`, '  parameter  marginalised σ  conditional σ', ...Array.from(r.marginalErrors, (m, i) => `  ${String(i).padStart(9)}  ${m.toPrecision(6).padStart(14)}  ${r.conditionalErrors[i]!.toPrecision(6).padStart(13)}`), `wrote ${a.out}`];
  process.stdout.write(`${lines.join('\n')}\n`);
}
