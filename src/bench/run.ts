/**
 * Runs the benchmark: the device's peaks, then each workload on the GPU
 * engine (wall time always, GPU time from timestamp queries where the
 * adapter has them; the median of repeated runs after a warm-up; inputs
 * random, never all zeros), with its peak device memory from the buffer
 * pool, and the same workload on the peers of this run, each checked against
 * our result before its time counts.
 */
import { CpuEngine } from '../engine/cpu.js';
import type { Engine } from '../engine/engine.js';
import { GpuEngine } from '../engine/gpu.js';
import { matmulShapesFor } from '../engine/tuning.js';
import { fisher } from '../fisher/estimate.js';
import type { FisherOptions } from '../fisher/options.js';
import type { FisherMatrix } from '../fisher/result.js';
import type { AdapterDescription, GpuDevice, Step } from '../gpu/device.js';
import { activationCode } from '../kernels/activation.js';
import { asShapes, Matmul, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';
import { Probe } from '../kernels/probe.js';
import { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';
import { Rng } from '../model/random.js';
import { architectureSpec } from '../model/architectures.js';
import { workOf, type FisherWorkload, type KernelWorkload, type WorkModel, type Workload } from './workloads.js';

export interface Peaks {
  /** FLOP/s of independent vec4 FMAs. */
  flops: number;
  /** Bytes/s of a vec4 copy (read + write). */
  bandwidth: number;
  /** Whether the probes were timed on the device or by the wall clock. */
  timedBy: 'gpu' | 'wall';
}

export interface Timing {
  /** Median wall seconds, end to end (uploads, dispatches, read-backs, host sums). */
  wall: number;
  /** Median seconds inside compute passes, from timestamp queries; absent without them. */
  gpu?: number;
  runs: number;
}

export interface PeerResult {
  peer: string;
  /** Median wall seconds, when it ran. */
  seconds?: number;
  /** Why it did not run, or did not count. */
  skipped?: string;
  /** Relative Frobenius difference of its result from ours. */
  difference?: number;
  /** Seconds of its first, compiling run, where it reports one apart. */
  warmup?: number;
  /** How it ran, where that matters to the figure (e.g. PyTorch's BLAS and threads). */
  note?: string;
}

export interface BenchRow {
  workload: Workload;
  work: WorkModel;
  ours: Timing;
  /** Peak device memory of the workload, from the buffer pool's accounting. */
  memoryBytes: number;
  peers: PeerResult[];
}

export interface BenchReport {
  format: 'fisher-gpu-bench/1';
  date: string;
  adapter: AdapterDescription & { summary: string };
  /** The primary matmul shape, and every shape the products chose from with its tuned rate. */
  matmul: MatmulConfig;
  matmulShapes: readonly MatmulShape[];
  peaks: Peaks;
  rows: BenchRow[];
}

export interface Peer {
  name: string;
  /**
   * Runs the workload; returns its result for the check (and its own timing
   * where it must exclude a warm-up, else the call is timed), or a reason to skip.
   */
  run(w: FisherWorkload, model: Network, data: Dataset): Promise<{ values: ArrayLike<number>; seconds?: number; warmup?: number; note?: string } | { skipped: string }>;
}

export interface BenchOptions {
  quick: boolean;
  matmul?: MatmulConfig;
  peers: Peer[];
  onRow?: (row: BenchRow) => void;
  log?: (line: string) => void;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
};

/** Runs `once` after a warm-up, as many times as fits, and returns the median timing. */
async function repeat(gpu: GpuDevice, once: () => Promise<void>, quick: boolean): Promise<Timing> {
  const t0 = performance.now();
  await once();
  const warm = (performance.now() - t0) / 1000;
  const runs = quick ? 2 : warm > 2 ? 3 : 5;
  const walls: number[] = [];
  const gpus: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t = performance.now();
    const { gpuSeconds } = await gpu.timed(once);
    walls.push((performance.now() - t) / 1000);
    if (gpuSeconds !== undefined) gpus.push(gpuSeconds);
  }
  return { wall: median(walls), ...(gpus.length === runs ? { gpu: median(gpus) } : {}), runs };
}

/** Peak FMA throughput and copy bandwidth, each scaled until a run takes at least `minSeconds`. */
export async function measurePeaks(gpu: GpuDevice, quick: boolean): Promise<Peaks> {
  const probe = await Probe.create(gpu);
  const minSeconds = quick ? 0.02 : 0.1;
  let iterations = 64;
  let fma = await probe.fmaThroughput(65536, iterations);
  while (fma.seconds < minSeconds && iterations < 1 << 24) {
    iterations = Math.ceil(iterations * Math.min(16, (1.5 * minSeconds) / Math.max(fma.seconds, 1e-6)));
    fma = await probe.fmaThroughput(65536, iterations);
  }
  const best = async (f: () => Promise<{ seconds: number; work: number }>) => {
    let rate = 0;
    for (let r = 0; r < 3; r++) {
      const x = await f();
      rate = Math.max(rate, x.work / x.seconds);
    }
    return rate;
  };
  const flops = await best(() => probe.fmaThroughput(65536, iterations));
  const maxBytes = Math.min(gpu.limits.maxStorageBufferBindingSize, quick ? 32 * 2 ** 20 : 128 * 2 ** 20);
  const bandwidth = await best(() => probe.copy(Math.floor(maxBytes / 16) * 16));
  return { flops, bandwidth, timedBy: gpu.canTime ? 'gpu' : 'wall' };
}

/** A seeded model and data for a workload: inputs N(0, 1), labels uniform. */
export function workloadInputs(w: FisherWorkload): { model: Network; data: Dataset } {
  const model = Network.random(architectureSpec(w.arch, w.widths), 1);
  const rng = new Rng(2);
  const x = rng.normals(w.n * model.inputs);
  const y = Float32Array.from({ length: w.n }, () => rng.int(model.outputs));
  return { model, data: new Dataset(x, y, w.n, model.inputs, 1) };
}

/** Every tensor of the result's file, flattened in order: what a peer's values are compared with (diag: θ-shaped; full: [P, P]; kfac: A, G, … per layer). */
export function resultValues(F: FisherMatrix): Float64Array {
  const tensors = [...F.tensors('F64').values()];
  const out = new Float64Array(tensors.reduce((s, t) => s + t.data.length, 0));
  let at = 0;
  for (const t of tensors) {
    out.set(t.data as Float64Array, at);
    at += t.data.length;
  }
  return out;
}

/** The options of a workload's Fisher, on every engine alike. */
function fisherOptions(w: FisherWorkload): FisherOptions {
  return {
    kind: w.kind,
    structure: w.structure,
    ...(w.kind === 'mc' ? { samples: 1, seed: 1 } : {}),
    ...(w.lowrank ? { rank: w.lowrank.rank, passes: w.lowrank.passes, seed: 1 } : {}),
  };
}

async function runFisher(gpu: GpuDevice, engine: Engine, w: FisherWorkload, o: BenchOptions): Promise<Omit<BenchRow, 'workload' | 'work'>> {
  const { model, data } = workloadInputs(w);
  const options = fisherOptions(w);
  gpu.buffers.trim();
  const base = gpu.buffers.stats().current;
  gpu.buffers.resetPeak();
  let ours: ArrayLike<number> = [];
  const timing = await repeat(
    gpu,
    async () => {
      const F = await fisher(engine, model, data, options);
      ours = resultValues(F);
    },
    o.quick,
  );
  const memoryBytes = gpu.buffers.stats().peak - base;
  const peers: PeerResult[] = [];
  for (const peer of o.peers) {
    try {
      const t0 = performance.now();
      const r = await peer.run(w, model, data);
      if ('skipped' in r) {
        peers.push({ peer: peer.name, skipped: r.skipped });
        continue;
      }
      const seconds = r.seconds ?? (performance.now() - t0) / 1000;
      const difference = relativeDifference(r.values, ours);
      // A peer's time counts only when it computed the same matrix.
      const extra = { ...(r.warmup === undefined ? {} : { warmup: r.warmup }), ...(r.note === undefined ? {} : { note: r.note }) };
      peers.push(
        difference <= 1e-3 ? { peer: peer.name, seconds, difference, ...extra } : { peer: peer.name, difference, skipped: `result differs from ours by ${difference.toExponential(2)}` },
      );
    } catch (e) {
      peers.push({ peer: peer.name, skipped: `failed: ${(e as Error).message}` });
    }
  }
  return { ours: timing, memoryBytes, peers };
}

async function runKernel(gpu: GpuDevice, w: KernelWorkload, shapes: readonly MatmulShape[], o: BenchOptions): Promise<Omit<BenchRow, 'workload' | 'work'>> {
  const mm = await Matmul.create(gpu, shapes);
  const rng = new Rng(3);
  const buf = (floats: number, label: string) => gpu.storage(floats * 4, label, rng.normals(floats));
  const { batch: b, inputs: i, outputs: out } = w;
  gpu.buffers.trim();
  const base = gpu.buffers.stats().current;
  gpu.buffers.resetPeak();
  const held: GPUBuffer[] = [];
  const keep = async (p: Promise<GPUBuffer>) => {
    const x = await p;
    held.push(x);
    return x;
  };
  let encode: (step: Step) => void;
  const layer = { weightOffset: 0, biasOffset: out * i };
  switch (w.op) {
    case 'forward': {
      const [x, theta, z, y] = [await keep(buf(b * i, 'x')), await keep(buf(out * (i + 1), 'θ')), await keep(buf(b * out, 'z')), await keep(buf(b * out, 'y'))];
      encode = (s) => mm.forward(s, { x, theta, layer, z, y, batch: b, inputs: i, outputs: out, activation: activationCode('relu') });
      break;
    }
    case 'backward': {
      const [delta, theta, zBelow, deltaBelow] = [await keep(buf(b * out, 'δ')), await keep(buf(out * (i + 1), 'θ')), await keep(buf(b * i, 'z')), await keep(buf(b * i, 'δ below'))];
      encode = (s) => mm.backward(s, { delta, theta, layer, zBelow, deltaBelow, batch: b, inputs: i, outputs: out, activation: activationCode('relu') });
      break;
    }
    case 'squared_gradient': {
      const [delta, a, result] = [await keep(buf(b * out, 'δ')), await keep(buf(b * i, 'a')), await keep(buf(out * (i + 1), 'S'))];
      encode = (s) => mm.squaredGradient(s, { delta, a, out: result, layer, batch: b, inputs: i, outputs: out });
      break;
    }
    case 'gram': {
      const [g, result] = [await keep(buf(b * i, 'G')), await keep(buf(i * i, 'F'))];
      encode = (s) => mm.gram(s, { g, out: result, batch: b, ld: i, offset: 0, size: i, row0: 0, rows: i });
      break;
    }
  }
  try {
    const timing = await repeat(
      gpu,
      async () => {
        await gpu.step(w.name, encode);
        await gpu.finish();
      },
      o.quick,
    );
    return { ours: timing, memoryBytes: gpu.buffers.stats().peak - base, peers: [] };
  } finally {
    for (const x of held) gpu.buffers.release(x);
  }
}

export function relativeDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0;
  let den = 0;
  for (let k = 0; k < a.length; k++) {
    num += (a[k]! - b[k]!) ** 2;
    den += b[k]! ** 2;
  }
  return Math.sqrt(num / (den || 1));
}

export async function runBench(gpu: GpuDevice, workloads: Workload[], o: BenchOptions): Promise<BenchReport> {
  const log = o.log ?? (() => undefined);
  log(`measuring the device's peaks on ${gpu.describe()}`);
  const peaks = await measurePeaks(gpu, o.quick);
  // The library's own choice of shapes, unless the caller fixes one.
  const shapes = o.matmul ? asShapes(o.matmul) : matmulShapesFor(gpu);
  const engine = new GpuEngine(gpu, shapes);
  const rows: BenchRow[] = [];
  for (const w of workloads) {
    log(`running ${w.name}`);
    const r = w.type === 'fisher' ? await runFisher(gpu, engine, w, o) : await runKernel(gpu, w, shapes, o);
    const row: BenchRow = { workload: w, work: workOf(w), ...r };
    rows.push(row);
    o.onRow?.(row);
  }
  return {
    format: 'fisher-gpu-bench/1',
    date: new Date().toISOString(),
    adapter: { ...gpu.adapter, summary: gpu.describe() },
    matmul: shapes[0]!.config,
    matmulShapes: shapes,
    peaks,
    rows,
  };
}

/** The float64 reference path as a peer, where it finishes within `budgetSeconds` (estimated at 0.3 GFLOP/s). */
export function cpuPeer(budgetSeconds: number): Peer {
  return {
    name: 'fisher-gpu CPU path (float64)',
    async run(w, model, data) {
      const estimate = workOf(w).flops / 0.3e9;
      if (estimate > budgetSeconds) return { skipped: `estimated ${estimate.toFixed(0)} s, over the ${budgetSeconds} s budget` };
      const F = await fisher(new CpuEngine(), model, data, fisherOptions(w));
      return { values: resultValues(F) };
    },
  };
}
