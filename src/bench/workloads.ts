/**
 * The benchmark's workloads and the written model of their work: FLOPs (one
 * multiply-add = 2 FLOP; only the matrix products are counted, the O(N·width)
 * activations and heads are not) and bytes (every kernel reading its operands
 * and writing its results once, float32: the compulsory traffic), from which
 * arithmetic intensity and the roofline follow.
 */
import type { FisherKind } from '../fisher/options.js';
import { sizeOf } from '../layers/layer.js';
import { walkLayers } from '../layers/registry.js';
import { architectureSpec, type Architecture } from '../model/architectures.js';
import { parseSpec } from '../model/spec.js';
import { OVERSAMPLING } from '../fisher/structures/lowrank.js';
import { kernelWork, type KernelOp, type WorkModel } from '../kernels/work.js';

export { kernelWork, type KernelOp, type WorkModel };

export interface FisherWorkload {
  type: 'fisher';
  name: string;
  /** The network: an MLP of `widths`, or a built-in image network. */
  arch: Architecture;
  widths: number[];
  n: number;
  structure: BenchStructure;
  kind: FisherKind;
  /** lowrank: the rank k and the passes over the data (a fixed count, so the work is known before the run). */
  lowrank?: { rank: number; passes: number };
}

/** The structures the benchmark times. */
export type BenchStructure = 'diag' | 'full' | 'block' | 'kfac' | 'ekfac' | 'lowrank';


/** One matrix kernel alone: a layer of `inputs` → `outputs` over a batch, or the Gram of a [batch, P] block. */
export interface KernelWorkload {
  type: 'kernel';
  name: string;
  op: KernelOp;
  batch: number;
  inputs: number;
  outputs: number;
}

export type Workload = FisherWorkload | KernelWorkload;

const F32 = 4;

/** Layers (in, out) of an MLP of the given widths. */
function layers(widths: readonly number[]): [number, number][] {
  return widths.slice(1).map((out, l) => [widths[l]!, out]);
}

export function parameterCount(widths: readonly number[]): number {
  return layers(widths).reduce((s, [i, o]) => s + o * (i + 1), 0);
}


/**
 * Work of a Fisher computation on an image network, counting the products
 * of its linear and conv2d layers (a layer's weight size times the positions
 * it acts at, per sample): the forward pass once, then per virtual sample the
 * backward pass (its input gradient, but the first layer's) and the
 * structure's products: per-sample gradients (the same count again) for
 * diag, full and block, and for kfac the Gram products of each factored
 * layer's ā rows (once) and δ rows (per virtual sample), upper triangles
 * (expand: T rows per sample). Bytes: every layer's input and output once,
 * and its per-sample gradient rows or its K-FAC rows.
 */
function networkWork(w: FisherWorkload): WorkModel {
  const spec = parseSpec(architectureSpec(w.arch, w.widths));
  const outputs = spec.layers[spec.layers.length - 1]!.output[0]!;
  const virtual = w.kind === 'exact' ? outputs : 1;
  let flops = 0;
  let floats = 0;
  let parameters = 0;
  let first = true;
  for (const node of walkLayers(spec.layers)) {
    floats += sizeOf(node.input) + sizeOf(node.output);
    parameters += node.parameters.reduce((t, q) => t + sizeOf(q.shape), 0);
    if (node.type !== 'linear' && node.type !== 'conv2d') continue;
    const weight = sizeOf(node.parameters[0]!.shape);
    const channels = node.type === 'conv2d' ? node.output[0]! : node.output[node.output.length - 1]!;
    const positions = sizeOf(node.output) / channels;
    const perPass = 2 * weight * positions;
    flops += perPass + virtual * (first ? 0 : perPass);
    if (w.structure === 'kfac' || w.structure === 'ekfac') {
      const inputs = weight / channels;
      flops += kernelWork('gram', positions, inputs, 0).flops + virtual * kernelWork('gram', positions, channels, 0).flops;
      floats += positions * (inputs + virtual * channels);
      if (w.structure === 'ekfac') {
        // The second pass: the layer's products again, its rows rotated into the eigenbases
        // ([ā, 1] Q_A, δ Q_G), the rotated per-sample gradient Σ_t δ'_t ā'_tᵀ and its square.
        const ia = inputs + 1;
        flops += perPass + virtual * (first ? 0 : perPass);
        flops += virtual * (2 * positions * (ia * ia + channels * channels) + 2 * positions * channels * ia + channels * ia);
        floats += positions * (ia + virtual * channels) + virtual * channels * ia;
      }
    } else {
      flops += virtual * perPass;
      floats += virtual * node.parameters.reduce((t, p) => t + sizeOf(p.shape), 0);
    }
    first = false;
  }
  const work = { flops: w.n * flops, bytes: F32 * w.n * floats };
  return w.structure === 'lowrank' ? lowrankWork(w, work, parameters, virtual) : work;
}

/**
 * Low-rank's passes: each is the diagonal's passes (forward, backward, the
 * per-sample gradient rows: `pass`), then the sketch products of those rows
 * with Ω [P, k + oversampling]: (g Ω) and gᵀ (g Ω), 4·N·P·(k + 10) FLOPs,
 * reading the rows once more.
 */
function lowrankWork(w: FisherWorkload, pass: WorkModel, p: number, virtual: number): WorkModel {
  const { rank, passes } = w.lowrank!;
  const columns = rank + LOWRANK_OVERSAMPLING;
  return {
    flops: passes * (pass.flops + virtual * 4 * w.n * p * columns),
    bytes: passes * (pass.bytes + F32 * virtual * (w.n * p + 2 * p * columns)),
  };
}


/** Work of a Fisher computation: the forward pass once, then per virtual sample the backward pass and the structure's reduction. */
export function fisherWork(w: FisherWorkload): WorkModel {
  if (w.arch !== 'mlp') return networkWork(w);
  const ls = layers(w.widths);
  const outputs = w.widths[w.widths.length - 1]!;
  const virtual = w.kind === 'exact' ? outputs : 1;
  let flops = 0;
  let bytes = 0;
  const add = (m: WorkModel, times = 1) => {
    flops += m.flops * times;
    bytes += m.bytes * times;
  };
  ls.forEach(([i, o]) => add(kernelWork('forward', w.n, i, o)));
  ls.forEach(([i, o], l) => l > 0 && add(kernelWork('backward', w.n, i, o), virtual));
  switch (w.structure) {
    case 'diag':
      ls.forEach(([i, o]) => add(kernelWork('squared_gradient', w.n, i, o), virtual));
      break;
    case 'full':
    case 'block': {
      const p = parameterCount(w.widths);
      bytes += F32 * w.n * p * virtual; // the per-sample rows, written
      if (w.structure === 'full') add(kernelWork('gram', w.n, p, 0), virtual);
      else ls.forEach(([i, o]) => add(kernelWork('gram', w.n, o * (i + 1), 0), virtual));
      break;
    }
    case 'lowrank':
      // The per-sample gradient rows, δ_n [a_n, 1]ᵀ: one multiply per entry, written once.
      flops += virtual * w.n * parameterCount(w.widths);
      bytes += F32 * virtual * w.n * parameterCount(w.widths);
      return lowrankWork(w, { flops, bytes }, parameterCount(w.widths), virtual);
    case 'kfac':
    case 'ekfac':
      // A: the Gram of [a, 1] once (the bias column by a column sum); G: of δ per virtual sample.
      ls.forEach(([i, o]) => {
        add(kernelWork('gram', w.n, i, 0));
        add(kernelWork('gram', w.n, o, 0), virtual);
      });
      if (w.structure === 'kfac') break;
      // EK-FAC's second pass: the passes again, then per virtual sample each layer's rows rotated
      // ([a, 1] Q_A, δ Q_G) and the squared-gradient product of the rotated rows.
      ls.forEach(([i, o]) => add(kernelWork('forward', w.n, i, o)));
      ls.forEach(([i, o], l) => l > 0 && add(kernelWork('backward', w.n, i, o), virtual));
      ls.forEach(([i, o]) => {
        add(kernelWork('forward', w.n, i, i + 1), virtual);
        add(kernelWork('forward', w.n, o, o), virtual);
        add(kernelWork('squared_gradient', w.n, i, o), virtual);
      });
      break;
  }
  return { flops, bytes };
}

export function workOf(w: Workload): WorkModel {
  return w.type === 'fisher' ? fisherWork(w) : kernelWork(w.op, w.batch, w.inputs, w.outputs);
}

/** The low-rank workloads' rank and pass count (DESIGN.md's default rank; a fixed pass budget, reported unconverged where it stops short). */
const LOWRANK_BENCH = { rank: 64, passes: 2 };
/** The sketch's extra columns, as structures/lowrank.ts adds them. */
const LOWRANK_OVERSAMPLING = OVERSAMPLING;

const structureLabel = (structure: BenchStructure) => (structure === 'lowrank' ? `lowrank k=${LOWRANK_BENCH.rank} (${LOWRANK_BENCH.passes} passes)` : structure);

const fisherCase = (widths: number[], n: number, structure: BenchStructure, kind: FisherKind = 'empirical'): FisherWorkload => ({
  type: 'fisher',
  name: `${kind} ${structureLabel(structure)} ${widths.join('-')} N=${n.toLocaleString('en-US')}`,
  arch: 'mlp',
  widths,
  n,
  structure,
  kind,
  ...(structure === 'lowrank' ? { lowrank: LOWRANK_BENCH } : {}),
});

const kernelCase = (op: KernelOp, batch: number, inputs: number, outputs: number): KernelWorkload => ({
  type: 'kernel',
  name: op === 'gram' ? `kernel gram P=${inputs} batch=${batch}` : `kernel ${op} ${inputs}→${outputs} batch=${batch}`,
  op,
  batch,
  inputs,
  outputs,
});

const networkCase = (arch: Exclude<Architecture, 'mlp'>, n: number, structure: BenchStructure = 'diag'): FisherWorkload => ({
  type: 'fisher',
  name: `empirical ${structureLabel(structure)} ${arch} N=${n.toLocaleString('en-US')}`,
  arch,
  widths: [],
  n,
  structure,
  kind: 'empirical',
  ...(structure === 'lowrank' ? { lowrank: LOWRANK_BENCH } : {}),
});

/** The full suite: MLPs from 64-32-10 to 784-1024-1024-10, N from 10³ to 10⁵, the cnn and resnet examples, every structure, and the kernels alone. */
export function fullSuite(): Workload[] {
  return [
    kernelCase('forward', 4096, 784, 256),
    kernelCase('backward', 4096, 256, 256),
    kernelCase('squared_gradient', 4096, 784, 256),
    kernelCase('gram', 4096, 2410, 0),
    fisherCase([64, 32, 10], 1_000, 'diag'),
    fisherCase([64, 32, 10], 100_000, 'diag'),
    fisherCase([784, 100, 10], 10_000, 'diag'),
    fisherCase([784, 256, 256, 10], 1_000, 'diag'),
    fisherCase([784, 256, 256, 10], 10_000, 'diag'),
    fisherCase([784, 256, 256, 10], 100_000, 'diag'),
    fisherCase([784, 1024, 1024, 10], 10_000, 'diag'),
    fisherCase([784, 256, 256, 10], 10_000, 'diag', 'mc'),
    fisherCase([784, 100, 10], 1_000, 'diag', 'exact'),
    fisherCase([64, 32, 10], 1_000, 'full'),
    fisherCase([64, 32, 10], 10_000, 'full'),
    fisherCase([784, 256, 256, 10], 10_000, 'kfac'),
    fisherCase([784, 256, 256, 10], 10_000, 'ekfac'),
    fisherCase([784, 256, 256, 10], 10_000, 'lowrank'),
    fisherCase([64, 32, 10], 10_000, 'block'),
    networkCase('cnn', 10_000),
    networkCase('cnn', 10_000, 'kfac'),
    networkCase('resnet', 10_000),
    networkCase('resnet', 10_000, 'kfac'),
    networkCase('resnet', 10_000, 'ekfac'),
    networkCase('resnet', 10_000, 'lowrank'),
  ];
}

/** A run under a minute, for CI's smoke test. */
export function quickSuite(): Workload[] {
  return [kernelCase('forward', 1024, 784, 256), kernelCase('gram', 1024, 610, 0), fisherCase([784, 100, 10], 1_000, 'diag'), fisherCase([64, 32, 10], 1_000, 'full')];
}
