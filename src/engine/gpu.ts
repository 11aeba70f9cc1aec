/**
 * The GPU engine: runs a network over one batch at a time with the layers'
 * GPU ops (src/layers), planned as one sequence op (sequence.ts). θ lives on
 * the device as one flat buffer in parameter order.
 *
 * Per batch:
 *   forward   the layers in order, x → f (activations fused where possible)   once
 *   head      δ_f = ∂ℓ/∂f for one label source (likelihood.wgsl)               per virtual sample
 *   backward  the layers in reverse, δ_f → every layer's output gradient        per virtual sample
 * then, by what is asked, per parametrised layer:
 *   diag      Σ_s g_s ⊙ g_s: a direct product where the layer has one (linear
 *             on a flat input: (δ²)ᵀ[a², 1]), else per-sample rows squared and
 *             summed over s (column_reduce)
 *   full      per-sample rows g [n·V, P], then F tile = G[:, rows]ᵀ G (gram)
 *   training  (1/n) Σ_s g_s (a direct product, or rows summed), then θ ← step
 * Fisher results are read back once per batch (the estimator sums batches in
 * float64 with compensation); training steps are only enqueued.
 */
import { formatBytes } from '../gpu/bytes.js';
import type { GpuDevice, Step } from '../gpu/device.js';
import { GpuLimitError } from '../gpu/errors.js';
import { LikelihoodHead } from '../kernels/likelihood.js';
import { asShapes, DEFAULT_MATMUL_CONFIG, Matmul, tileOf, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';
import { Optimizer } from '../kernels/optimizer.js';
import { layerKernels, type LayerKernels } from '../layers/kernels.js';
import type { ConvolutionRoute, GpuEnv, KroneckerGeometry, ParameterLeaf } from '../layers/layer.js';
import { kroneckerGeometry } from '../layers/registry.js';
import type { Dataset } from '../model/data.js';
import { layerOffsets } from '../model/layout.js';
import type { Network } from '../model/network.js';
import { DATA_LABELS, type BatchMemory, type BatchOptions, type BatchStructure, type Engine, type GramBlock, type GramTile, type KroneckerBasis, type KroneckerMode, type KroneckerPartial, type LabelSource, type LoadedModel, type SquaredGradientTotal } from './engine.js';
import { biasCorrections, penaltyColumns, resolveOptimizer, type DensePenalty, type KroneckerPenalty, type OptimizerSpec, type PenaltyGradient, type ResolvedOptimizer } from './optimizer.js';
import { activationCode } from '../kernels/activation.js';
import { SequenceOp } from './sequence.js';
import { adapterKind } from './autotune.js';
import { matmulShapesFor } from './tuning.js';

/** Most samples per batch: bounds the float32 sums inside one batch (the estimator sums batches in float64). */
export const MAX_BATCH = 4096;
/** Device memory one batch's buffers may take, at most. */
const BATCH_MEMORY_BUDGET = 512 * 2 ** 20;

/**
 * On a CPU-SIMD adapter (lavapipe), device memory is host memory, and each
 * page of a new buffer costs a fault at its first touch (about 13 µs on
 * the 2-core VM of bench/RESULTS.md), while batches beyond about a
 * thousand rows run the kernels no faster. Where a batch costs nothing but
 * its dispatches (the diagonal: its sums stay on the device, read once at
 * the end), the engine prefers (BatchMemory.preferred, which the planner
 * takes where no batch size is asked for) the largest batch whose network
 * buffers take at most this much, in whole tiles of 128 rows, but not
 * below CAPPED_BATCH_FLOOR rows. 784-256-256-10's diagonal, 4,096 → 1,664
 * rows: whole process −85 ms, −90 ms of CPU; 784-1024-1024-10's, 4,096 →
 * 1,024: −355 ms. Structures that read partial sums back every batch keep
 * the largest batch: K-FAC's factors at 1,664 rows took 90 ms longer
 * (bench/RESULTS.md, issue 12's tenth part).
 */
const CAPPED_BATCH_BYTES = 16 * 2 ** 20;
/** The fewest rows the preference goes down to (not measured below). */
const CAPPED_BATCH_FLOOR = 1024;
/** The structures whose batches cost only their dispatches (sums kept on the device). */
const DEVICE_SUMMED: ReadonlySet<BatchStructure> = new Set(['diag']);

/** The batch preferred for `structure`, `networkBytes` per sample, on `gpu`: none but on CPU adapters, for the structures of DEVICE_SUMMED. */
function preferredBatch(gpu: GpuDevice, structure: BatchStructure, networkBytes: number): Pick<BatchMemory, 'preferred'> {
  if (adapterKind(gpu) !== 'cpu' || !DEVICE_SUMMED.has(structure)) return {};
  const batch = Math.max(CAPPED_BATCH_FLOOR, 128 * Math.floor(CAPPED_BATCH_BYTES / networkBytes / 128));
  return { preferred: { batch, why: `a CPU adapter's ${structure} pass: the network's buffers within ${formatBytes(CAPPED_BATCH_BYTES)}, at least ${CAPPED_BATCH_FLOOR} rows` } };
}
const F32 = 4;

/**
 * Rows per slice of a K-FAC factor's Gram (Matmul.gramSliced) and of its
 * Σ ā (Elementwise.columnReduce). A factor is a sum over every row of a
 * batch, n·T of them for a convolution (nearly 10⁶ for the cnn's first
 * layer): one float32 sum over them drifted to 3·10⁻⁴ relative, and a thin
 * factor (26 × 26) was one workgroup. In slices of at most this many rows
 * each sum stays short, the slices run in parallel, and the host sums them
 * in float64.
 */
const SLICE_ROWS = 4096;

/** The slices of a Gram over `count` rows. */
export function gramSlices(count: number): number {
  return Math.max(1, Math.ceil(count / SLICE_ROWS));
}

/** The per-batch buffers of the network's input and output, sized for `capacity` samples and reused across batches. */
interface BatchBuffers {
  capacity: number;
  x: GPUBuffer;
  targets: GPUBuffer;
  /** The network output f and its gradient δ_f, [capacity, out]. */
  f: GPUBuffer;
  df: GPUBuffer;
  /** Per-sample gradient rows of the layers without a direct reduction, [capacity, largest P_l]. */
  rows: GPUBuffer | undefined;
}

/** Training state: θ-shaped buffers for the gradient, the penalty and the optimiser's moments. */
interface TrainingState {
  optimizer: ResolvedOptimizer;
  steps: number;
  grad: GPUBuffer;
  penaltyScale: GPUBuffer;
  penaltyCenter: GPUBuffer;
  moment1: GPUBuffer;
  moment2: GPUBuffer;
  /** The structured penalty's terms on the device, and the scratch of their products. */
  kronecker: { term: KroneckerPenalty; a: GPUBuffer; g: GPUBuffer; center: GPUBuffer }[];
  dense: { term: DensePenalty; matrix: GPUBuffer; center: GPUBuffer }[];
  scratch: GPUBuffer[];
}

/** Refuses a K-FAC penalty term whose sizes do not fit its layer. */
export function checkKroneckerPenalty(k: KroneckerPenalty, p: number): void {
  const ia = penaltyColumns(k);
  const size = k.outputs * ia;
  if (k.a.length !== ia * ia || k.g.length !== k.outputs ** 2 || k.center.length !== size || k.offset < 0 || k.offset + size > p) {
    throw new RangeError(`a K-FAC penalty term at θ offset ${k.offset} does not fit: [W | b] is [${k.outputs}, ${ia}], A ${k.a.length}, G ${k.g.length}, θ* ${k.center.length} values (P = ${p})`);
  }
}

export class GpuModel implements LoadedModel {
  #batch: BatchBuffers | undefined;
  #training: TrainingState | undefined;
  #released = false;
  readonly #network: SequenceOp;
  readonly #leaves: number;
  /** The largest parametrised layer without a direct reduction (its rows' width). */
  readonly #widestRows: number;
  /** How K-FAC factors each parametrised layer, in layout order (undefined: its exact diagonal). */
  readonly #kronecker: readonly (KroneckerGeometry | undefined)[];
  /** Per parametrised layer: K-FAC reads its input and output gradient as rows in place (KroneckerOp.rowsInPlace). */
  readonly #rowsInPlace: readonly boolean[];

  private constructor(
    readonly gpu: GpuDevice,
    readonly model: Network,
    /** θ, [P], in parameter order. */
    readonly theta: GPUBuffer,
    readonly kernels: LayerKernels,
    readonly head: LikelihoodHead,
    readonly optimizer: Optimizer,
    convolutions: ConvolutionRoute,
  ) {
    const offsets = layerOffsets(model.layout);
    const env: GpuEnv = {
      gpu,
      kernels,
      theta,
      offset: (node) => {
        const o = offsets.get(node);
        if (o === undefined) throw new Error(`layer ${node.name ?? node.type} has no parameters`);
        return o;
      },
      sequence: (nodes, input) => new SequenceOp(env, nodes, input),
      convolutions,
    };
    this.#network = new SequenceOp(env, model.layers, model.inputShape);
    this.#leaves = model.layout.layers.length;
    // Rows only for the layers without a direct reduction (none in an MLP): the leaves are
    // enumerated here with stand-in buffers.
    const ops = this.#network.leaves(kernels.scratch, kernels.scratch).map((l) => l.op);
    this.#widestRows = Math.max(0, ...ops.filter((op) => !op.canReduce('squared') || !op.canReduce('sum')).map((op) => op.size));
    this.#kronecker = ops.map((op) => (op.kronecker ? kroneckerGeometry(op.node) : undefined));
    this.#rowsInPlace = ops.map((op) => op.kronecker?.rowsInPlace ?? false);
  }

  get matmul(): Matmul {
    return this.kernels.matmul;
  }

  /** `convolutions`: how convolutions run (GpuEnv); default: directly on a CPU-SIMD adapter, as products on a GPU. */
  static async load(gpu: GpuDevice, model: Network, shapes: MatmulConfig | readonly MatmulShape[] = DEFAULT_MATMUL_CONFIG, convolutions?: ConvolutionRoute): Promise<GpuModel> {
    const [matmul, head, optimizer] = await Promise.all([Matmul.create(gpu, shapes), LikelihoodHead.create(gpu, model.likelihood.spec.type), Optimizer.create(gpu)]);
    const theta = model.parameters();
    const route = convolutions ?? (adapterKind(gpu) === 'cpu' ? 'direct' : 'products');
    return new GpuModel(gpu, model, await gpu.storage(theta.byteLength, 'θ', theta), await layerKernels(gpu, matmul), head, optimizer, route);
  }

  /**
   * The factored layers' geometries, with the rows each contributes per
   * sample under `mode`; whether its input and output gradient are its ā and
   * δ rows as they lie (`inPlace`: read, not copied); and whether G's Gram
   * reads δ straight from the output gradient (`dDirect`: in place, one label
   * source per batch (`virtualSamples`), no sum over positions), where it
   * otherwise reads the stack of every label source's rows.
   */
  #factored(mode: KroneckerMode = 'expand', virtualSamples = 1): { layer: number; k: KroneckerGeometry; rows: number; ia: number; inPlace: boolean; dDirect: boolean }[] {
    return this.#kronecker.flatMap((k, layer) => {
      if (!k) return [];
      const inPlace = this.#rowsInPlace[layer]!;
      return [{ layer, k, rows: mode === 'reduce' ? 1 : k.positions, ia: k.inputs + (k.bias ? 1 : 0), inPlace, dDirect: inPlace && mode === 'expand' && virtualSamples === 1 }];
    });
  }

  /** Label sources per step of the diagonal reduction: as many [P] rows as one binding holds. */
  #reducePerStep(virtualSamples: number): number {
    const p = this.model.parameterCount;
    return Math.max(1, Math.min(virtualSamples, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (p * F32))));
  }

  /** K-FAC's label sources per step: the stacked δ rows of a batch of `n` (and the squares, if any layer is unfactored) fit a binding. */
  #kfacPerStep(virtualSamples: number, mode: KroneckerMode, n: number): number {
    const binding = this.gpu.limits.maxStorageBufferBindingSize;
    const widestD = Math.max(1, ...this.#factored(mode).map(({ k, rows }) => rows * k.outputs));
    const unfactored = this.#kronecker.some((k) => k === undefined);
    return Math.max(1, Math.min(virtualSamples, Math.floor(binding / (F32 * n * widestD)), unfactored ? Math.floor(binding / (F32 * this.model.parameterCount)) : virtualSamples));
  }

  /** EK-FAC's floats of Λ per label source, and the label sources per step. */
  #ekfacLambda(virtualSamples: number): { floats: number; perStep: number } {
    const floats = this.#factored().reduce((s, { k, ia }) => s + k.outputs * ia, 0);
    return { floats, perStep: Math.max(1, Math.min(virtualSamples, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (F32 * Math.max(1, floats))))) };
  }

  /**
   * The buffers a batch of `structure` holds on the device beyond the
   * network's (DESIGN.md §2): floats per sample of each per-batch buffer
   * (allocated for the batch's capacity) and floats of each fixed one. The
   * allocations below read their sizes from here, and so does the planner
   * (K-FAC's statistics: a bound, the batch's own slices counted at its size).
   */
  #structureBuffers(structure: BatchStructure, o: BatchOptions): { perSample: Record<string, number>; fixed: Record<string, number> } {
    const p = this.model.parameterCount;
    const v = o.virtualSamples ?? 1;
    const most = (xs: number[]) => Math.max(0, ...xs);
    switch (structure) {
      case 'diag':
        // A step's squared-gradient rows, and the running total and its compensation (squaredGradientTotal).
        return { perSample: {}, fixed: { squares: this.#reducePerStep(v) * p, total: p, compensation: p } };
      case 'full':
      case 'block': {
        const sizes = structure === 'full' ? [p] : this.model.layout.layers.map((l) => l.size);
        return { perSample: { rows: v * p }, fixed: { tile: most(sizes.map((size) => this.gramRowsPerTile(size) * size)) } };
      }
      case 'lowrank': {
        const k = o.sketch ?? 0;
        return { perSample: { rows: v * p, coefficients: v * k }, fixed: { basis: k * p, sketch: k * p } };
      }
      case 'kfac': {
        const mode = o.kfac ?? 'expand';
        const f = this.#factored(mode, v);
        const reduce = mode === 'reduce';
        // Stacked δ rows for every label source of a step: at most all of them.
        const perStep = this.#kfacPerStep(v, mode, 1);
        // Each Gram and Σ ā in gramSlices(count) ≤ count / SLICE_ROWS + 1 slices: the first per factor fixed, the rest per sample.
        const stats = f.reduce((s, { k }) => s + k.inputs ** 2 + k.inputs + k.outputs ** 2, 0);
        const slices = f.reduce((s, { k, rows }) => s + (rows * (k.inputs ** 2 + k.inputs) + perStep * rows * k.outputs ** 2) / SLICE_ROWS, 0);
        const unfactored = this.#kronecker.some((k) => k === undefined);
        return {
          perSample: {
            aRows: most(f.map(({ k, inPlace }) => (inPlace ? 0 : k.positions * k.inputs))),
            aReduced: reduce ? most(f.map(({ k }) => k.inputs)) : 0,
            dTemp: reduce ? most(f.map(({ k, inPlace }) => (inPlace ? 0 : k.positions * k.outputs))) : 0,
            dStacks: perStep * f.reduce((s, { k, rows, dDirect }) => s + (dDirect ? 0 : rows * k.outputs), 0),
            slices,
          },
          fixed: { stats, squares: unfactored ? perStep * p : 0 },
        };
      }
      case 'ekfac': {
        const f = this.#factored();
        const lambda = this.#ekfacLambda(v);
        return {
          perSample: {
            aRows: most(f.map(({ k }) => k.positions * k.inputs)),
            aRotated: most(f.map(({ k, ia }) => k.positions * ia)),
            dRows: most(f.map(({ k }) => k.positions * k.outputs)),
            dRotated: most(f.map(({ k }) => k.positions * k.outputs)),
            gRows: most(f.map(({ k, ia }) => (k.positions > 1 ? k.outputs * ia : 0))),
          },
          fixed: { rotations: f.reduce((s, { k, ia }) => s + ia * ia + k.outputs ** 2, 0), lambda: lambda.perStep * lambda.floats },
        };
      }
    }
  }

  /**
   * The device memory of a batch of `structure`: bytes per sample (the
   * network's buffers and the structure's), fixed bytes (θ, the structure's
   * fixed buffers), and the largest batch the binding and dispatch limits
   * allow whatever the budget (and on a CPU adapter, for the diagonal, the
   * batch it prefers: preferredBatch).
   */
  memory(structure: BatchStructure, o: BatchOptions = {}): BatchMemory {
    const m = this.model;
    const own = this.#structureBuffers(structure, o);
    const network = [m.inputs, m.targetWidth, m.outputs, m.outputs, this.#network.floatsPerSample(), this.#widestRows];
    const perSample = [...network, ...Object.values(own.perSample)];
    const fixed = [m.parameterCount, ...Object.values(own.fixed)];
    const binding = this.gpu.limits.maxStorageBufferBindingSize;
    // Every per-batch buffer is one binding (the network's stages each within floatsPerSample).
    const widest = Math.max(...perSample);
    const widestFixed = Math.max(...fixed);
    if (F32 * widestFixed > binding) throw new GpuLimitError(`${structure} needs a buffer of ${widestFixed} floats, beyond the device's ${binding}-byte binding limit`);
    const byBinding = Math.floor(binding / (F32 * widest));
    if (byBinding < 1) throw new GpuLimitError(`one sample's ${structure} work (${widest} floats in one buffer) exceeds the device's ${binding}-byte binding limit`);
    const sum = (xs: number[]) => F32 * xs.reduce((a, b) => a + b, 0);
    return {
      perSample: sum(perSample),
      fixed: sum(fixed),
      maxBatch: Math.min(MAX_BATCH, byBinding, this.gpu.limits.maxComputeWorkgroupsPerDimension),
      ...preferredBatch(this.gpu, structure, sum(network)),
      shared: { perSample: sum(network), fixed: F32 * m.parameterCount },
    };
  }

  maxBatch(structure: BatchStructure, virtualSamples = 1, o: Omit<BatchOptions, 'virtualSamples'> = {}): number {
    const budget = o.budget ?? BATCH_MEMORY_BUDGET;
    const mem = this.memory(structure, { ...o, virtualSamples });
    const b = Math.min(mem.maxBatch, Math.floor((budget - mem.fixed) / mem.perSample));
    if (b < 1) {
      throw new GpuLimitError(`a batch of one sample of ${structure} needs ${formatBytes(mem.fixed + mem.perSample)} of device memory (${formatBytes(mem.fixed)} fixed, ${formatBytes(mem.perSample)} per sample), more than the ${formatBytes(budget)} budget`);
    }
    return b;
  }

  /** Rows of a `size` × `size` Gram block (P: the whole matrix) per tile: one tile's buffer fits one binding. */
  gramRowsPerTile(size = this.model.parameterCount): number {
    const rows = Math.min(size, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (F32 * size)), Math.floor(BATCH_MEMORY_BUDGET / (F32 * size)));
    if (rows < 1) throw new GpuLimitError(`a row of the ${size}×${size} Fisher exceeds the device's binding limit`);
    return rows;
  }

  async #buffers(n: number, structure: BatchStructure, virtualSamples = 1): Promise<BatchBuffers> {
    this.#assertLive();
    const max = this.memory(structure, { virtualSamples }).maxBatch;
    if (n > max) throw new GpuLimitError(`batch of ${n} exceeds the largest the device's limits allow (${max})`);
    if (this.#batch && this.#batch.capacity >= n) return this.#batch;
    this.#releaseBatch();
    const m = this.model;
    const alloc = (width: number, label: string) => this.gpu.storage(n * width * F32, label);
    this.#batch = {
      capacity: n,
      x: await alloc(m.inputs, 'x'),
      targets: await alloc(m.targetWidth, 'targets'),
      f: await alloc(m.outputs, 'f'),
      df: await alloc(m.outputs, 'δf'),
      rows: this.#widestRows > 0 ? await alloc(this.#widestRows, 'per-sample rows') : undefined,
    };
    await this.#network.allocate(n);
    return this.#batch;
  }

  #encodeForward(step: Step, buf: BatchBuffers, n: number): void {
    this.#network.forward(step, { n, x: buf.x, y: buf.f });
  }

  /** The head for one label source, then the backward pass: every layer's output gradient. */
  #encodeBackward(step: Step, buf: BatchBuffers, n: number, labels: LabelSource = DATA_LABELS): void {
    this.head.outputGradient(step, {
      labels,
      f: buf.f,
      targets: buf.targets,
      delta: buf.df,
      batch: n,
      outputs: this.model.outputs,
      targetWidth: this.model.targetWidth,
      precision: this.model.likelihood.precision,
    });
    this.#network.backward(step, { n, x: buf.x, y: buf.f, dy: buf.df });
  }

  #leavesOf(buf: BatchBuffers): ParameterLeaf[] {
    const leaves = this.#network.leaves(buf.x, buf.df);
    if (leaves.length !== this.#leaves) throw new Error(`the plan has ${leaves.length} parametrised layers, the layout ${this.#leaves}`);
    return leaves;
  }

  /**
   * Per layer, a θ-shaped result into `out` at `offset` + the layer's offset:
   * scale · Σ_s g_s (sum) or Σ_s g_s ⊙ g_s (squared).
   */
  #encodeParameterReduction(step: Step, buf: BatchBuffers, n: number, out: GPUBuffer, kind: 'sum' | 'squared', scale: number, offset = 0, only?: (layer: number) => boolean): void {
    for (const [layer, { op, x, dy }] of this.#leavesOf(buf).entries()) {
      if (only && !only(layer)) continue;
      if (op.canReduce(kind)) {
        op.reduce(step, { n, x, dy }, { buffer: out, at: offset }, kind, scale);
        continue;
      }
      op.perSampleGradient(step, { n, x, dy }, { g: buf.rows!, ldg: op.size, offset: 0 });
      this.kernels.elementwise.columnReduce(step, { rows: buf.rows!, out, columns: op.size, samples: n, ld: op.size, offset: offset + op.offset, scale, square: kind === 'squared' });
    }
  }

  async #upload(batch: Dataset, structure: BatchStructure, virtualSamples = 1): Promise<BatchBuffers> {
    const buf = await this.#buffers(batch.n, structure, virtualSamples);
    await this.gpu.upload(buf.x, batch.x);
    await this.gpu.upload(buf.targets, batch.y);
    return buf;
  }

  async forward(x: Float32Array, n: number): Promise<Float32Array> {
    const m = this.model;
    const out = new Float32Array(n * m.outputs);
    const chunk = this.maxBatch('diag');
    for (let s0 = 0; s0 < n; s0 += chunk) {
      const s1 = Math.min(n, s0 + chunk);
      const buf = await this.#buffers(s1 - s0, 'diag');
      await this.gpu.upload(buf.x, x.subarray(s0 * m.inputs, s1 * m.inputs));
      await this.gpu.step('forward', (step) => this.#encodeForward(step, buf, s1 - s0));
      out.set(await this.gpu.readF32(buf.f, (s1 - s0) * m.outputs * F32), s0 * m.outputs);
    }
    return out;
  }

  /** One forward pass, then per label source the backward pass and the per-sample rows into a new buffer g [n·V, P]. */
  async #perSampleGradients(batch: Dataset, labels: readonly LabelSource[]): Promise<GPUBuffer> {
    const buf = await this.#upload(batch, 'full', labels.length);
    const p = this.model.parameterCount;
    // Sized for the batch's capacity, so that every batch reuses one buffer (the planner counts one).
    const g = await this.gpu.storage(labels.length * buf.capacity * p * F32, 'per-sample gradients');
    try {
      await this.gpu.step('per-sample gradients', (step) => {
        this.#encodeForward(step, buf, batch.n);
        labels.forEach((l, v) => {
          this.#encodeBackward(step, buf, batch.n, l);
          for (const { op, x, dy } of this.#leavesOf(buf)) op.perSampleGradient(step, { n: batch.n, x, dy }, { g, ldg: p, offset: v * batch.n * p + op.offset });
        });
      });
    } catch (e) {
      this.gpu.buffers.release(g);
      throw e;
    }
    return g;
  }

  async gradients(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float32Array> {
    const g = await this.#perSampleGradients(batch, [labels]);
    try {
      return await this.gpu.readF32(g, batch.n * this.model.parameterCount * F32);
    } finally {
      this.gpu.buffers.release(g);
    }
  }

  /**
   * Per label source v, a θ-shaped reduction of the batch into row v of a
   * [V, P] buffer, read back and summed: one forward pass, then as many label
   * sources per step as one binding holds rows of P.
   */
  async #reduce(batch: Dataset, kind: 'sum' | 'squared', labels: readonly LabelSource[], scale: number): Promise<Float32Array | Float64Array> {
    const p = this.model.parameterCount;
    const sum = labels.length > 1 ? new Float64Array(p) : undefined;
    let only: Float32Array | undefined;
    await this.#reduceSteps(batch, kind, labels, scale, async (out, rows) => {
      const values = await this.gpu.readF32(out, rows * p * F32);
      if (!sum) only = values;
      else for (let k = 0; k < rows; k++) for (let j = 0; j < p; j++) sum[j]! += values[k * p + j]!;
    });
    return sum ?? only!;
  }

  /**
   * The steps of a θ-shaped reduction: one forward pass, then per step the
   * backward passes and reductions of as many label sources as one binding
   * holds rows of P, into `out`. `total` (a running total's buffers) gets
   * each step's rows added on the device, in the step; `collect` (after
   * each step) reads them instead.
   */
  async #reduceSteps(
    batch: Dataset,
    kind: 'sum' | 'squared',
    labels: readonly LabelSource[],
    scale: number,
    collect: ((out: GPUBuffer, rows: number) => Promise<void>) | undefined,
    total?: { sum: GPUBuffer; compensation: GPUBuffer },
  ): Promise<void> {
    const buf = await this.#upload(batch, 'diag');
    const p = this.model.parameterCount;
    const perStep = this.#reducePerStep(labels.length);
    const out = await this.gpu.storage(perStep * p * F32, kind === 'sum' ? 'mean gradient' : 'squared-gradient sums');
    try {
      for (let v0 = 0; v0 < labels.length; v0 += perStep) {
        const some = labels.slice(v0, v0 + perStep);
        await this.gpu.step(kind === 'sum' ? 'mean gradient' : 'squared-gradient sum', (step) => {
          if (v0 === 0) this.#encodeForward(step, buf, batch.n);
          some.forEach((l, k) => {
            this.#encodeBackward(step, buf, batch.n, l);
            this.#encodeParameterReduction(step, buf, batch.n, out, kind, scale, k * p);
          });
          if (total) this.kernels.elementwise.compensatedAdd(step, { rows: out, ...total, count: p, samples: some.length });
        });
        await collect?.(out, some.length);
      }
    } finally {
      // Released with work still queued on it: the next user's writes are queued after that work.
      this.gpu.buffers.release(out);
    }
  }

  squaredGradientSum(batch: Dataset, labels: readonly LabelSource[] = [DATA_LABELS]): Promise<Float32Array | Float64Array> {
    return this.#reduce(batch, 'squared', labels, 1);
  }

  /**
   * The squared-gradient sums of many batches summed on the device with
   * compensation (elementwise.wgsl's compensated_add) and read once: a batch
   * is submitted without waiting for the one before it to be read back and
   * summed on the host, so the device does not idle between batches. At
   * most two batches are queued (the host waits for the one before the last
   * to finish), which bounds the uploads the driver stages.
   */
  squaredGradientTotal(): SquaredGradientTotal {
    const p = this.model.parameterCount;
    let held: Promise<{ sum: GPUBuffer; compensation: GPUBuffer }> | undefined;
    let released = false;
    let inFlight: Promise<void> | undefined;
    const zeroed = (label: string) => this.gpu.zeros(p * F32, label);
    const buffers = () => {
      if (released) throw new Error('squaredGradientTotal: used after release()');
      return (held ??= (async () => ({ sum: await zeroed('squared-gradient total'), compensation: await zeroed('squared-gradient total compensation') }))());
    };
    return {
      add: async (batch, labels = [DATA_LABELS]) => {
        await this.#reduceSteps(batch, 'squared', labels, 1, undefined, await buffers());
        const before = inFlight;
        inFlight = this.gpu.finish();
        await before;
      },
      read: async (scale = 1) => {
        const { sum, compensation } = await buffers();
        await inFlight;
        const [s, c] = [await this.gpu.readF32(sum, p * F32), await this.gpu.readF32(compensation, p * F32)];
        // One loop, the scale in it: each pass over P values in a fresh array costs a cold loop and the array's
        // first touch (3 ms a MB where page faults are slow, as in the VMs of bench/RESULTS.md). Float64Array.from
        // with a mapping function took 75–100 ms for P = 269,322 (V8, Node 20).
        const total = new Float64Array(p);
        for (let j = 0; j < p; j++) total[j] = (s[j]! + c[j]!) * scale;
        return total;
      },
      release: () => {
        if (released) return;
        released = true;
        inFlight?.catch(() => undefined);
        // (An allocation that failed has already thrown from add.)
        held?.then(
          ({ sum, compensation }) => {
            this.gpu.buffers.release(sum);
            this.gpu.buffers.release(compensation);
          },
          () => undefined,
        );
      },
    };
  }

  meanGradient(batch: Dataset): Promise<Float32Array | Float64Array> {
    return this.#reduce(batch, 'sum', [DATA_LABELS], 1 / batch.n);
  }

  async gramSum(batch: Dataset, onTile: (tile: GramTile) => void, labels: readonly LabelSource[] = [DATA_LABELS], blocks?: readonly GramBlock[]): Promise<void> {
    const p = this.model.parameterCount;
    const wanted = blocks ?? [{ offset: 0, size: p }];
    const g = await this.#perSampleGradients(batch, labels);
    try {
      const tileFloats = Math.max(...wanted.map((b) => this.gramRowsPerTile(b.size) * b.size));
      const tile = await this.gpu.storage(tileFloats * F32, 'gram tile');
      try {
        for (const [k, { offset, size, rows: range }] of wanted.entries()) {
          const rowsPerTile = this.gramRowsPerTile(size);
          const [first, end] = range ? [range.start, range.start + range.count] : [0, size];
          for (let row0 = first; row0 < end; row0 += rowsPerTile) {
            const rows = Math.min(rowsPerTile, end - row0);
            await this.gpu.step(`gram block ${k} rows ${row0}..${row0 + rows}`, (step) => {
              this.matmul.gram(step, { g, out: tile, batch: labels.length * batch.n, ld: p, offset, size, row0, rows });
            });
            onTile({ block: k, row0, rows, values: await this.gpu.readF32(tile, rows * size * F32) });
          }
        }
      } finally {
        this.gpu.buffers.release(tile);
      }
    } finally {
      this.gpu.buffers.release(g);
    }
  }

  /**
   * K-FAC's statistics (engine.ts): after the forward pass, per factored
   * layer its ā rows (im2col for conv2d; under `reduce` their means over the
   * positions) and their Gram matrix and column sums; then per label source
   * the backward pass and each layer's δ rows (under `reduce` their sums over
   * the positions), stacked over the label sources of a step so that one
   * Gram product sums them; the layers K-FAC does not factor get their
   * squared-gradient sums as in `diag`. One read-back per step.
   */
  async kroneckerSums(batch: Dataset, labels: readonly LabelSource[], mode: KroneckerMode): Promise<KroneckerPartial[]> {
    const n = batch.n;
    const buf = await this.#upload(batch, 'kfac', labels.length);
    const cap = buf.capacity;
    const p = this.model.parameterCount;
    const binding = this.gpu.limits.maxStorageBufferBindingSize;
    const reduce = mode === 'reduce';
    const geometries = this.#kronecker;
    const factored = this.#factored(mode, labels.length);
    const diagonal = geometries.some((k) => k === undefined);
    const sizes = this.#structureBuffers('kfac', { virtualSamples: labels.length, kfac: mode });
    const perStep = this.#kfacPerStep(labels.length, mode, cap);
    // Where each layer's Σ ā āᵀ, Σ ā and Σ δ δᵀ go in one statistics buffer, the Grams in their
    // slices (room for a step of perStep label sources; a last, shorter step takes fewer).
    let floats = 0;
    const at = factored.map(({ k, rows }) => {
      const aa = gramSlices(n * rows) * k.inputs ** 2;
      const o = { aa: floats, a: floats + aa, gg: floats + aa + gramSlices(n * rows) * k.inputs };
      floats = o.gg + gramSlices(perStep * n * rows) * k.outputs ** 2;
      return o;
    });
    if (floats * F32 > binding) throw new GpuLimitError(`K-FAC's factors (${floats} floats) exceed the device's ${binding}-byte binding limit`);
    const alloc = (count: number, label: string) => this.gpu.storage(Math.max(4, count * F32), label);
    const owned: GPUBuffer[] = [];
    const own = async (count: number, label: string) => {
      const b = await alloc(count, label);
      owned.push(b);
      return b;
    };
    try {
      const stats = await own(floats, 'K-FAC statistics');
      const aRows = await own(cap * sizes.perSample['aRows']!, 'K-FAC ā rows');
      const aReduced = reduce ? await own(cap * sizes.perSample['aReduced']!, 'K-FAC mean ā') : aRows;
      const dTemp = reduce ? await own(cap * sizes.perSample['dTemp']!, 'K-FAC δ rows') : undefined;
      const dStacks = await Promise.all(factored.map(({ k, rows, dDirect }) => (dDirect ? undefined : own(perStep * cap * rows * k.outputs, 'K-FAC stacked δ rows'))));
      const squares = diagonal ? await own(perStep * p, 'squared-gradient sums') : undefined;
      const parts: KroneckerPartial[] = geometries.map((k, layer) =>
        k
          ? { kind: 'kronecker', rows: 0, aa: new Float64Array(k.inputs ** 2), a: new Float64Array(k.inputs), gg: new Float64Array(k.outputs ** 2) }
          : { kind: 'diagonal', squares: new Float64Array(this.model.layout.layers[layer]!.size) },
      );
      const add = (into: Float32Array | Float64Array, from: Float32Array, offset: number) => {
        for (let i = 0; i < into.length; i++) into[i]! += from[offset + i]!;
      };
      // The slices of a sum over `count` rows (a Gram's, Σ ā's), one after the other.
      const addSlices = (into: Float32Array | Float64Array, from: Float32Array, offset: number, count: number) => {
        for (let z = 0; z < gramSlices(count); z++) add(into, from, offset + z * into.length);
      };
      for (let v0 = 0; v0 < labels.length; v0 += perStep) {
        const some = labels.slice(v0, v0 + perStep);
        await this.gpu.step('K-FAC statistics', (step) => {
          const leaves = this.#leavesOf(buf);
          if (v0 === 0) {
            this.#encodeForward(step, buf, n);
            // A from the forward pass, once per batch.
            factored.forEach(({ layer, k, rows, inPlace }, j) => {
              const { op, x } = leaves[layer]!;
              if (!inPlace) op.kronecker!.inputRows(step, { n, x }, aRows);
              const all = inPlace ? x : aRows;
              if (reduce) this.kernels.elementwise.positionsSum(step, { x: all, y: aReduced, batch: n, positions: k.positions, width: k.inputs, offset: 0, scale: 1 / k.positions });
              const source = reduce ? aReduced : all;
              this.#encodeGram(step, source, n * rows, k.inputs, stats, at[j]!.aa);
              this.kernels.elementwise.columnReduce(step, { rows: source, out: stats, columns: k.inputs, samples: n * rows, ld: k.inputs, offset: at[j]!.a, scale: 1, square: false, slices: gramSlices(n * rows) });
            });
          }
          some.forEach((l, v) => {
            this.#encodeBackward(step, buf, n, l);
            factored.forEach(({ layer, k, rows, inPlace, dDirect }, j) => {
              if (dDirect) return;
              const { op, dy } = leaves[layer]!;
              const stackAt = v * n * rows * k.outputs;
              if (!reduce) {
                op.kronecker!.gradientRows(step, { n, dy }, { buffer: dStacks[j]!, at: stackAt });
                return;
              }
              // δ rows as they are (in place) or copied, then summed over positions into the stack.
              if (!inPlace) op.kronecker!.gradientRows(step, { n, dy }, { buffer: dTemp!, at: 0 });
              this.kernels.elementwise.positionsSum(step, { x: inPlace ? dy : dTemp!, y: dStacks[j]!, batch: n, positions: k.positions, width: k.outputs, offset: stackAt, scale: 1 });
            });
            if (squares) this.#encodeParameterReduction(step, buf, n, squares, 'squared', 1, v * p, (layer) => geometries[layer] === undefined);
          });
          // G: one Gram product over the stacked rows of every label source of the step.
          factored.forEach(({ layer, k, rows }, j) => this.#encodeGram(step, dStacks[j] ?? leaves[layer]!.dy, some.length * n * rows, k.outputs, stats, at[j]!.gg));
        });
        const s = await this.gpu.readF32(stats, floats * F32);
        factored.forEach(({ layer, rows }, j) => {
          const part = parts[layer]! as Extract<KroneckerPartial, { kind: 'kronecker' }>;
          if (v0 === 0) {
            addSlices(part.aa, s, at[j]!.aa, n * rows);
            addSlices(part.a, s, at[j]!.a, n * rows);
            part.rows = n * rows;
          }
          addSlices(part.gg, s, at[j]!.gg, some.length * n * rows);
        });
        if (squares) {
          const sq = await this.gpu.readF32(squares, some.length * p * F32);
          this.model.layout.layers.forEach((slice, layer) => {
            const part = parts[layer]!;
            if (part.kind === 'diagonal') for (let v = 0; v < some.length; v++) add(part.squares, sq, v * p + slice.offset);
          });
        }
      }
      return parts;
    } finally {
      for (const b of owned) this.gpu.buffers.release(b);
    }
  }

  /**
   * EK-FAC's second pass (engine.ts). Per label source and factored layer
   * with a basis: its ā rows times Q_A (the augmented 1 as the product's
   * bias: the last row of Q_A), its δ rows times Q_G, then the squared
   * per-sample gradient of that rotated layer summed over the batch: the
   * squared-gradient product where T = 1 (rank one per sample), else
   * per-sample rows Σ_t δ'_t ā'_tᵀ squared and summed.
   */
  async rotatedSquareSums(batch: Dataset, labels: readonly LabelSource[], bases: readonly (KroneckerBasis | undefined)[]): Promise<(Float64Array | undefined)[]> {
    const n = batch.n;
    const buf = await this.#upload(batch, 'ekfac', labels.length);
    const cap = buf.capacity;
    const sizes = this.#structureBuffers('ekfac', { virtualSamples: labels.length });
    const layers = bases.flatMap((basis, layer) => {
      if (!basis) return [];
      const k = this.#kronecker[layer];
      if (!k) throw new Error(`layer ${this.model.layout.layers[layer]!.name} is not Kronecker-factored`);
      return [{ layer, basis, k, ia: k.inputs + (k.bias ? 1 : 0) }];
    });
    let floats = 0;
    const at = layers.map(({ k, ia }) => (floats += k.outputs * ia) - k.outputs * ia);
    const { perStep } = this.#ekfacLambda(labels.length);
    const owned: GPUBuffer[] = [];
    const own = async (count: number, label: string, data?: Float32Array) => {
      const b = await this.gpu.storage(Math.max(4, count * F32), label, data);
      owned.push(b);
      return b;
    };
    try {
      // The rotations as products' weights: ā' = ā Wᵀ + b with W[j, i] = Q_A[i, j], b = Q_A's last row; δ' = δ Q_G.
      const rotations = await Promise.all(
        layers.map(async ({ basis, k, ia }) => {
          const wa = new Float32Array(ia * ia);
          for (let j = 0; j < ia; j++) {
            for (let i = 0; i < k.inputs; i++) wa[j * k.inputs + i] = basis.qa[i * ia + j]!;
            if (k.bias) wa[ia * k.inputs + j] = basis.qa[k.inputs * ia + j]!;
          }
          const wg = new Float32Array(k.outputs * k.outputs);
          for (let o = 0; o < k.outputs; o++) for (let c = 0; c < k.outputs; c++) wg[c * k.outputs + o] = basis.qg[o * k.outputs + c]!;
          return { a: await own(ia * ia, 'Q_A', wa), g: await own(k.outputs ** 2, 'Q_G', wg) };
        }),
      );
      const per = sizes.perSample;
      const aRows = await own(cap * per['aRows']!, 'ā rows');
      const aRot = await own(cap * per['aRotated']!, 'ā rotated');
      const dRows = await own(cap * per['dRows']!, 'δ rows');
      const dRot = await own(cap * per['dRotated']!, 'δ rotated');
      const gRows = await own(cap * per['gRows']!, 'rotated per-sample gradients');
      const lam = await own(perStep * floats, 'rotated squared-gradient sums');
      const sums = bases.map((_, layer) => {
        const l = layers.find((x) => x.layer === layer);
        return l ? new Float64Array(l.k.outputs * l.ia) : undefined;
      });
      const mm = this.matmul;
      for (let v0 = 0; v0 < labels.length; v0 += perStep) {
        const some = labels.slice(v0, v0 + perStep);
        await this.gpu.step('EK-FAC rotated squares', (step) => {
          const leaves = this.#leavesOf(buf);
          if (v0 === 0) this.#encodeForward(step, buf, n);
          some.forEach((l, v) => {
            this.#encodeBackward(step, buf, n, l);
            layers.forEach(({ layer, k, ia }, j) => {
              const { op, x, dy } = leaves[layer]!;
              const rows = n * k.positions;
              const r = rotations[j]!;
              op.kronecker!.inputRows(step, { n, x }, aRows);
              mm.forward(step, { x: aRows, theta: r.a, layer: { weightOffset: 0, biasOffset: k.bias ? ia * k.inputs : undefined }, scratch: this.kernels.scratch, y: aRot, batch: rows, inputs: k.inputs, outputs: ia, activation: 0 });
              op.kronecker!.gradientRows(step, { n, dy }, { buffer: dRows, at: 0 });
              mm.forward(step, { x: dRows, theta: r.g, layer: { weightOffset: 0, biasOffset: undefined }, scratch: this.kernels.scratch, y: dRot, batch: rows, inputs: k.outputs, outputs: k.outputs, activation: 0 });
              const to = v * floats + at[j]!;
              if (k.positions === 1) {
                mm.squaredGradient(step, { delta: dRot, a: aRot, out: lam, layer: { weightOffset: to, biasOffset: undefined }, batch: n, inputs: ia, outputs: k.outputs });
                return;
              }
              this.kernels.perSample.encode(step, { delta: dRot, a: aRot, g: gRows, batch: n, positions: k.positions, inputs: ia, outputs: k.outputs, bias: false, ldg: k.outputs * ia, offset: 0 });
              this.kernels.elementwise.columnReduce(step, { rows: gRows, out: lam, columns: k.outputs * ia, samples: n, ld: k.outputs * ia, offset: to, scale: 1, square: true });
            });
          });
        });
        const got = await this.gpu.readF32(lam, some.length * floats * F32);
        layers.forEach(({ layer }, j) => {
          const sum = sums[layer]!;
          for (let v = 0; v < some.length; v++) for (let i = 0; i < sum.length; i++) sum[i]! += got[v * floats + at[j]! + i]!;
        });
      }
      return sums;
    } finally {
      for (const b of owned) this.gpu.buffers.release(b);
    }
  }

  /**
   * The low-rank sketch (engine.ts): the per-sample rows G [n·V, P] of every
   * label source, then S = G Ωᵀ [n·V, k] and Sᵀ G [k, P]: two products, F
   * never formed.
   */
  async sketchSum(batch: Dataset, labels: readonly LabelSource[], omega: Float32Array, k: number): Promise<Float32Array> {
    const p = this.model.parameterCount;
    if (omega.length !== k * p) throw new RangeError(`the sketch basis has ${omega.length} entries, expected ${k}·${p}`);
    if (k * p * F32 > this.gpu.limits.maxStorageBufferBindingSize) {
      throw new GpuLimitError(`a sketch of ${k} vectors of P = ${p} (${k * p * F32} bytes) exceeds the device's ${this.gpu.limits.maxStorageBufferBindingSize}-byte binding limit`);
    }
    const rows = labels.length * batch.n;
    const g = await this.#perSampleGradients(batch, labels);
    const owned = [g];
    try {
      const basis = await this.gpu.storage(k * p * F32, 'sketch basis', omega);
      owned.push(basis);
      const s = await this.gpu.storage(labels.length * this.#batch!.capacity * k * F32, 'sketch coefficients');
      owned.push(s);
      const y = await this.gpu.storage(k * p * F32, 'sketch');
      owned.push(y);
      await this.gpu.step('low-rank sketch', (step) => {
        this.matmul.forward(step, { x: g, theta: basis, layer: { weightOffset: 0, biasOffset: undefined }, scratch: this.kernels.scratch, y: s, batch: rows, inputs: p, outputs: k, activation: 0 });
        this.matmul.weightGradient(step, { delta: s, a: g, out: y, layer: { weightOffset: 0, biasOffset: undefined }, batch: rows, inputs: p, outputs: k, scale: 1 });
      });
      return await this.gpu.readF32(y, k * p * F32);
    } finally {
      for (const b of owned) this.gpu.buffers.release(b);
    }
  }

  /** Σ_r row_r row_rᵀ of rows [count, width] (upper triangle) into out from element `at`, in gramSlices(count) slices. */
  #encodeGram(step: Step, rows: GPUBuffer, count: number, width: number, out: GPUBuffer, at: number): void {
    const gram = { g: rows, out, batch: count, ld: width, offset: 0, size: width, row0: 0, rows: width, at };
    const slices = gramSlices(count);
    if (slices > 1) this.matmul.gramSliced(step, { ...gram, slices });
    else this.matmul.gram(step, gram);
  }

  async setOptimizer(spec: OptimizerSpec, penalty?: PenaltyGradient): Promise<void> {
    this.#assertLive();
    const p = this.model.parameterCount;
    for (const [name, v] of [['scale', penalty?.scale], ['center', penalty?.center]] as const) {
      if (v && v.length !== p) throw new RangeError(`penalty ${name} has length ${v.length}, expected P = ${p}`);
    }
    this.#releaseTraining();
    const zeros = new Float32Array(p);
    const buffer = (label: string, data: Float32Array) => this.gpu.storage(p * F32, label, data);
    const upload = (label: string, data: Float32Array) => this.gpu.storage(Math.max(4, data.length * F32), label, data);
    for (const k of penalty?.kronecker ?? []) checkKroneckerPenalty(k, p);
    for (const d of penalty?.dense ?? []) {
      if (d.matrix.length !== p * p || d.center.length !== p) throw new RangeError(`a dense penalty term needs M [P, P] and θ* [P] (P = ${p})`);
    }
    const kronecker = await Promise.all(
      (penalty?.kronecker ?? []).map(async (term) => ({ term, a: await upload('penalty A', term.a), g: await upload('penalty G', term.g), center: await upload('penalty θ*', term.center) })),
    );
    const dense = await Promise.all((penalty?.dense ?? []).map(async (term) => ({ term, matrix: await upload('penalty M', term.matrix), center: await upload('penalty θ*', term.center) })));
    // Three [outputs, ia] products of the largest term (D, D A, G D A); a dense term's difference and product.
    const widest = Math.max(0, ...kronecker.map(({ term }) => term.outputs * penaltyColumns(term)), dense.length > 0 ? p : 0);
    const scratch = widest > 0 ? await Promise.all([0, 1, 2].map(() => this.gpu.storage(widest * F32, 'penalty scratch'))) : [];
    this.#training = {
      optimizer: resolveOptimizer(spec),
      steps: 0,
      grad: await buffer('gradient', zeros),
      penaltyScale: await buffer('penalty scale', penalty?.scale ?? zeros),
      penaltyCenter: await buffer('penalty center', penalty?.center ?? zeros),
      moment1: await buffer('moment 1', zeros),
      moment2: await buffer('moment 2', zeros),
      kronecker,
      dense,
      scratch,
    };
  }

  /**
   * Adds the structured penalty's gradient into `grad` on the device: per
   * K-FAC term weight · G D A (D = θ_l − θ*_l as [W | b]: a gather, two
   * products, a scatter), per dense term weight · M (θ − θ*). θ never
   * leaves the device.
   */
  #encodeStructuredPenalty(step: Step, t: TrainingState): void {
    const identity = activationCode('identity');
    const [d, da, gda] = t.scratch;
    const ew = this.kernels.elementwise;
    for (const { term, a, g, center } of t.kronecker) {
      const ia = penaltyColumns(term);
      const shape = { offset: term.offset, inputs: term.inputs, outputs: term.outputs, bias: term.bias };
      ew.augmentedDifference(step, { theta: this.theta, center, out: d!, ...shape });
      // D A: [out, ia] · [ia, ia]; then G (D A): [out, out] · [out, ia]. Plain products (identity activation).
      this.matmul.backward(step, { delta: d!, theta: a, layer: { weightOffset: 0, biasOffset: undefined }, zBelow: d!, deltaBelow: da!, batch: term.outputs, inputs: ia, outputs: ia, activation: identity });
      this.matmul.backward(step, { delta: g, theta: da!, layer: { weightOffset: 0, biasOffset: undefined }, zBelow: da!, deltaBelow: gda!, batch: term.outputs, inputs: ia, outputs: term.outputs, activation: identity });
      ew.augmentedAccumulate(step, { x: gda!, into: t.grad, scale: term.weight, ...shape });
    }
    const p = this.model.parameterCount;
    for (const { term, matrix, center } of t.dense) {
      const whole = { offset: 0, inputs: p, outputs: 1, bias: false };
      ew.augmentedDifference(step, { theta: this.theta, center, out: d!, ...whole });
      // (θ − θ*)ᵀ M = (M (θ − θ*))ᵀ, M symmetric: [1, P] · [P, P].
      this.matmul.backward(step, { delta: d!, theta: matrix, layer: { weightOffset: 0, biasOffset: undefined }, zBelow: d!, deltaBelow: da!, batch: 1, inputs: p, outputs: p, activation: identity });
      ew.augmentedAccumulate(step, { x: da!, into: t.grad, scale: term.weight, ...whole });
    }
  }

  async trainStep(batch: Dataset): Promise<void> {
    const t = this.#training;
    if (!t) throw new Error('trainStep before setOptimizer');
    const buf = await this.#upload(batch, 'diag');
    t.steps++;
    const o = t.optimizer;
    await this.gpu.step('train step', (step) => {
      this.#encodeForward(step, buf, batch.n);
      this.#encodeBackward(step, buf, batch.n);
      this.#encodeParameterReduction(step, buf, batch.n, t.grad, 'sum', 1 / batch.n);
      this.#encodeStructuredPenalty(step, t);
      this.optimizer.encode(step, o.type, { ...t, theta: this.theta }, this.model.parameterCount, { ...o, ...biasCorrections(o, t.steps) });
    });
  }

  parameters(): Promise<Float32Array> {
    return this.gpu.readF32(this.theta, this.model.parameterCount * F32);
  }

  endPass(): void {
    // The per-call buffers of a structure's work went back to the pool; the batch's own stay in use.
    this.gpu.buffers.trim();
  }

  #releaseBatch(): void {
    const b = this.#batch;
    if (!b) return;
    for (const buf of [b.x, b.targets, b.f, b.df, b.rows]) if (buf) this.gpu.buffers.release(buf);
    this.#network.release();
    this.#batch = undefined;
  }

  #releaseTraining(): void {
    const t = this.#training;
    if (!t) return;
    const structured = [...t.kronecker.flatMap((k) => [k.a, k.g, k.center]), ...t.dense.flatMap((d) => [d.matrix, d.center]), ...t.scratch];
    for (const buf of [t.grad, t.penaltyScale, t.penaltyCenter, t.moment1, t.moment2, ...structured]) this.gpu.buffers.release(buf);
    this.#training = undefined;
  }

  #assertLive(): void {
    if (this.#released) throw new Error('this GPU model was released');
  }

  release(): void {
    if (this.#released) return;
    this.#releaseBatch();
    this.#releaseTraining();
    this.gpu.buffers.release(this.theta);
    this.gpu.buffers.release(this.kernels.scratch);
    this.#released = true;
  }
}

export class GpuEngine implements Engine {
  readonly backend = 'gpu' as const;
  /** The matmul shapes the products choose from, the primary first. */
  readonly shapes: readonly MatmulShape[];

  /**
   * @param shapes one matmul configuration for every product, or shapes with
   * their rates to choose from per product; default: those tuned for this
   * adapter (`fisher bench --tune`), else a safe default.
   * @param options.convolutions how convolutions of one group run: `direct`
   * (blocked direct kernels) or `products` (implicit matrix products);
   * default: by the adapter's kind, direct on a CPU-SIMD driver.
   */
  constructor(
    readonly gpu: GpuDevice,
    shapes?: MatmulConfig | readonly MatmulShape[],
    readonly options: { convolutions?: ConvolutionRoute } = {},
  ) {
    this.shapes = shapes === undefined ? matmulShapesFor(gpu) : asShapes(shapes);
  }

  /** The primary matmul shape. */
  get config(): MatmulConfig {
    return this.shapes[0]!.config;
  }

  /** A batch as tall as the primary shape's tile: each product picks its shape as for a full batch. */
  get warmUpRows(): number {
    return tileOf(this.config).rows;
  }

  settle(): Promise<void> {
    return this.gpu.finish();
  }

  describe(): string {
    return this.gpu.describe();
  }

  load(model: Network): Promise<GpuModel> {
    return GpuModel.load(this.gpu, model, this.shapes, this.options.convolutions);
  }

  /** The device belongs to the caller; the engine leaves it open. */
  dispose(): void {}
}
