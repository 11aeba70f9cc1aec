/**
 * The commands that use a Fisher file (issue: what users do with a Fisher):
 * mv, solve, eig, stats, merge, merge-models, ewc-penalty. Each reads the
 * self-describing Fisher file, and vectors as safetensors of tensors named
 * and shaped as the parameters; each writes its output atomically.
 */
import { writeSafetensors } from '../io/safetensors.js';
import { InputError } from '../layers/errors.js';
import { loadFisher } from '../fisher/load.js';
import { fisherWeightedMerge } from '../fisher/merging.js';
import { DEVICE_SOLVE_MIN_SIZE, solveOnDevice } from '../fisher/device-solve.js';
import { fisherMetadata, hasDenseBlocks, type FileDtype, type FisherMatrix, type SolveMethod, type SolveReport } from '../fisher/result.js';
import type { BackendChoice } from '../engine/select.js';
import { openDevice, type GpuDevice } from '../gpu/device.js';
import { NoAdapterError } from '../gpu/errors.js';
import { mergeShards } from '../fisher/shard.js';
import { parameterTensors, readParameterVector } from '../fisher/vectors.js';
import { readSafetensors } from '../io/safetensors.js';

async function vector(path: string, F: FisherMatrix, what: string): Promise<Float64Array> {
  const { values, ignored } = await readParameterVector(path, F.layout, what);
  if (ignored.length > 0) process.stderr.write(`fisher: note: ${path}: ignoring ${ignored.length} tensor${ignored.length > 1 ? 's' : ''} that are not the Fisher's parameters (${ignored.slice(0, 3).join(', ')}${ignored.length > 3 ? ', …' : ''})\n`);
  return values;
}

/** Six significant digits; exponent notation where fixed would hide them. */
function fmt(x: number): string {
  if (x === 0 || !Number.isFinite(x)) return String(x);
  return Math.abs(x) < 1e-3 || Math.abs(x) >= 1e7 ? x.toExponential(5) : x.toPrecision(6);
}

/** `fisher mv`: F v as parameter-shaped tensors. */
export async function mvCommand(a: { fisher: string; vector: string; out: string; dtype: FileDtype }): Promise<void> {
  const F = await loadFisher(a.fisher);
  const v = await vector(a.vector, F, 'vector');
  const fv = F.mv(v);
  await writeSafetensors(a.out, parameterTensors(F.layout, fv, a.dtype), { format: 'fisher-gpu/vector', of: 'F v' });
  const q = v.reduce((s, x, i) => s + x * fv[i]!, 0);
  process.stdout.write(`wrote ${a.out}: F v for P = ${F.size} (${F.info.structure}); vᵀ F v = ${fmt(q)}\n`);
}

/**
 * Whether `fisher solve` factors on the device: asked (`gpu`: every block
 * there, and an error where it cannot), or `auto` for an exact solve of a
 * full or block Fisher with a block of DEVICE_SOLVE_MIN_SIZE rows or more,
 * when an adapter opens.
 */
async function solveDevice(backend: BackendChoice, F: FisherMatrix, method: SolveMethod): Promise<GpuDevice | undefined> {
  if (backend === 'cpu') return undefined;
  const dense = hasDenseBlocks(F) && method === 'exact';
  if (backend === 'gpu' && !dense) {
    throw new InputError(`--backend gpu factors full and block Fishers with --method exact; ${method === 'exact' ? `a ${F.info.structure} Fisher's exact solve runs through its factors on the host` : `--method ${method} runs on the host`} (use --backend auto or cpu)`);
  }
  if (!dense || (backend === 'auto' && Math.max(...F.denseBlocks().map((b) => b.size)) < DEVICE_SOLVE_MIN_SIZE)) return undefined;
  try {
    return await openDevice();
  } catch (e) {
    if (backend === 'auto' && e instanceof NoAdapterError) return undefined;
    throw e;
  }
}

/** `fisher solve`: x with (F + δI) x = g, and how it was found. */
export async function solveCommand(a: {
  fisher: string;
  vector: string;
  out: string;
  damping: number;
  method: SolveMethod;
  tolerance?: number;
  maxIterations?: number;
  retry: boolean;
  dtype: FileDtype;
  backend: BackendChoice;
}): Promise<void> {
  const F = await loadFisher(a.fisher);
  const g = await vector(a.vector, F, 'right-hand side');
  const gpu = await solveDevice(a.backend, F, a.method);
  const tolerance = a.tolerance === undefined ? {} : { tolerance: a.tolerance };
  let r: SolveReport & { refinements?: number; deviceBlocks?: number };
  try {
    r = gpu
      ? await solveOnDevice(gpu, F, g, { damping: a.damping, retry: a.retry, ...tolerance, ...(a.backend === 'gpu' ? { minDeviceSize: 1 } : {}) })
      : F.solveWithReport(g, { damping: a.damping, method: a.method, retry: a.retry, ...tolerance, ...(a.maxIterations === undefined ? {} : { maxIterations: a.maxIterations }) });
  } finally {
    gpu?.dispose();
  }
  await writeSafetensors(a.out, parameterTensors(F.layout, r.x, a.dtype), { format: 'fisher-gpu/vector', of: '(F + damping I)^-1 g', method: r.method, damping: String(r.damping) });
  const how =
    r.method === 'cg'
      ? `conjugate gradients, ${r.iterations} iterations, relative residual ${fmt(r.relativeResidual!)}${r.converged ? '' : ' (NOT converged: raise --max-iterations or the damping)'}`
      : r.method === 'factored'
        ? "K-FAC's factored (π) damping"
        : r.deviceBlocks
          ? `exact (${F.info.structure}): Cholesky on the device for ${r.deviceBlocks} block${r.deviceBlocks > 1 ? 's' : ''}, ${r.refinements} refinement${r.refinements === 1 ? '' : 's'} in float64, relative residual ${fmt(r.relativeResidual!)}`
          : `exact (${F.info.structure})`;
  process.stdout.write(`wrote ${a.out}: (F + ${fmt(r.damping)}·I)⁻¹ g for P = ${F.size}, ${how}\n`);
  if (r.retries > 0) process.stderr.write(`fisher: warning: F + ${fmt(r.requestedDamping)}·I is not positive definite; solved at damping ${fmt(r.damping)} after ${r.retries} retries (--no-retry refuses instead)\n`);
  if (!r.converged) {
    process.stderr.write(
      r.method === 'cg'
        ? `fisher: warning: conjugate gradients stopped after ${r.iterations} iterations at relative residual ${fmt(r.relativeResidual!)}, short of the tolerance; the answer written is the last iterate\n`
        : `fisher: warning: the refined solve reached relative residual ${fmt(r.relativeResidual!)}, short of the tolerance: F + δI is nearly singular in float64; raise the damping\n`,
    );
  }
}

/** `fisher eig`: the top-k eigenpairs, printed and written. */
export async function eigCommand(a: { fisher: string; k: number; out?: string; json: boolean; dtype: FileDtype }): Promise<void> {
  const F = await loadFisher(a.fisher);
  if (a.k > F.size) throw new InputError(`--k ${a.k} exceeds P = ${F.size}`);
  const e = F.eig({ k: a.k });
  if (a.out) {
    const values = a.dtype === 'F64' ? e.values : Float32Array.from(e.values);
    const vectors = a.dtype === 'F64' ? e.vectors : Float32Array.from(e.vectors);
    await writeSafetensors(
      a.out,
      [
        ['eigenvalues', { dtype: a.dtype, shape: [a.k], data: values }],
        ['eigenvectors', { dtype: a.dtype, shape: [a.k, F.size], data: vectors }],
      ],
      { format: 'fisher-gpu/eig', method: e.method, converged: String(e.converged), parameters: fisherMetadata(F.info, F.layout)['parameters']! },
    );
  }
  if (a.json) {
    process.stdout.write(`${JSON.stringify({ eigenvalues: Array.from(e.values), method: e.method, iterations: e.iterations, converged: e.converged })}\n`);
  } else {
    const lines = [`top ${a.k} eigenvalues of the ${F.info.structure} Fisher (P = ${F.size}), ${e.method === 'exact' ? 'exact through its factors' : `Lanczos, ${e.iterations} products`}:`, ...Array.from(e.values, (v, j) => `  ${String(j + 1).padStart(4)}  ${fmt(v)}`)];
    if (a.out) lines.push(`wrote ${a.out}: eigenvalues [${a.k}], eigenvectors [${a.k}, ${F.size}]`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (!e.converged) process.stderr.write('fisher: warning: the Lanczos iteration stopped before every pair converged\n');
}

/** `fisher stats`: trace, Frobenius norm, log-determinant at a damping, top eigenvalue. */
export async function statsCommand(a: { fisher: string; damping: number; json: boolean }): Promise<void> {
  const F = await loadFisher(a.fisher);
  const attempt = (f: () => number): number | string => {
    try {
      return f();
    } catch (e) {
      return (e as Error).message;
    }
  };
  const stats = {
    structure: F.info.structure,
    kind: F.info.kind,
    n: F.info.n,
    parameters: F.size,
    trace: F.trace(),
    frobeniusNorm: attempt(() => F.frobeniusNorm()),
    damping: a.damping,
    logdet: attempt(() => F.logdet({ damping: a.damping })),
    topEigenvalue: attempt(() => F.eig({ k: 1 }).values[0]!),
  };
  if (a.json) {
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    return;
  }
  const show = (x: number | string) => (typeof x === 'number' ? fmt(x) : `— (${x})`);
  const rows: [string, string][] = [
    ['Fisher', `${stats.kind} ${stats.structure}, N = ${stats.n}, P = ${stats.parameters}`],
    ['trace', fmt(stats.trace)],
    ['Frobenius norm', show(stats.frobeniusNorm)],
    [`log det(F + ${fmt(a.damping)}·I)`, show(stats.logdet)],
    ['top eigenvalue', show(stats.topEigenvalue)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`);
}

/** `fisher merge`: Fishers of data shards into the Fisher of all the data. */
export async function mergeCommand(files: string[], a: { out: string; dtype: FileDtype }): Promise<void> {
  if (files.length === 0) throw new InputError('give the Fisher files to merge');
  const fishers = await Promise.all(files.map((f) => loadFisher(f)));
  const sharded = fishers.filter((f) => f.info.shard).length;
  if (sharded > 0 && sharded < fishers.length) throw new InputError(`${sharded} of the ${fishers.length} files are shards of a run (fisher compute --shard) and the others not: merge one run's shards together`);
  const merged = sharded > 0 ? mergeShards(fishers) : fishers[0]!.merge(fishers.slice(1));
  await merged.save(a.out, { dtype: a.dtype });
  process.stdout.write(`wrote ${a.out}: ${merged.info.structure} Fisher of ${fishers.length} ${sharded > 0 ? 'shards' : 'Fishers'}, N = ${merged.info.n}, trace ${fmt(merged.trace())}\n`);
}

/** `fisher merge-models`: Fisher-weighted averaging of models' weights (Matena & Raffel 2022). */
export async function mergeModelsCommand(a: { weights: string[]; fisher: string[]; out: string; floor: number }): Promise<void> {
  if (a.weights.length < 2) throw new InputError('give at least two --weights files to merge');
  if (a.weights.length !== a.fisher.length) throw new InputError(`one --fisher per --weights: ${a.weights.length} weights, ${a.fisher.length} Fishers`);
  const fishers = await Promise.all(a.fisher.map((f) => loadFisher(f)));
  const layout = fishers[0]!.layout;
  fishers.forEach((f, k) => {
    if (f.layout.entries.map((e) => `${e.name}[${e.shape}]`).join() !== layout.entries.map((e) => `${e.name}[${e.shape}]`).join()) {
      throw new InputError(`${a.fisher[k]}: its parameters differ from ${a.fisher[0]}'s`);
    }
  });
  const thetas = await Promise.all(a.weights.map((w, k) => vector(w, fishers[k]!, 'model')));
  const { theta, floored } = fisherWeightedMerge(thetas, fishers, { floor: a.floor });
  // Tensors of the first model that are not parameters (buffers) are kept as they are.
  const { tensors } = await readSafetensors(a.weights[0]!);
  const merged = new Map(tensors);
  for (const [name, t] of parameterTensors(layout, theta, 'F32')) merged.set(name, t);
  await writeSafetensors(a.out, merged);
  process.stdout.write(`wrote ${a.out}: ${a.weights.length} models merged by their Fishers' diagonals (P = ${theta.length}${floored > 0 ? `; ${floored} parameters no Fisher weighs took the plain mean` : ''})\n`);
}

/** `fisher ewc-penalty`: (λ/2) (θ − θ*)ᵀ F (θ − θ*), and its gradient if asked. */
export async function ewcPenaltyCommand(a: { fisher: string; weights: string; anchor: string; lambda: number; out?: string; json: boolean }): Promise<void> {
  const F = await loadFisher(a.fisher);
  const theta = await vector(a.weights, F, 'weights');
  const star = await vector(a.anchor, F, 'anchor');
  const penalty = F.ewcPenalty(theta, star, a.lambda);
  if (a.out) await writeSafetensors(a.out, parameterTensors(F.layout, F.ewcGradient(theta, star, a.lambda)), { format: 'fisher-gpu/vector', of: 'lambda F (theta - anchor)' });
  if (a.json) process.stdout.write(`${JSON.stringify({ penalty, lambda: a.lambda, structure: F.info.structure })}\n`);
  else process.stdout.write(`EWC penalty (λ/2)(θ − θ*)ᵀF(θ − θ*) = ${fmt(penalty)} with λ = ${a.lambda} and the ${F.info.structure} Fisher${a.out ? `; its gradient λF(θ − θ*) in ${a.out}` : ''}\n`);
}
