/**
 * The GPU engine: drives the kernels of src/kernels over one batch at a time.
 * θ lives on the device as one flat buffer in parameter order; the kernels
 * read each layer's W and b at its offsets.
 *
 * Per batch (layers l = 0…L−1, a_0 = x):
 *   forward   z_l = a_l W_lᵀ + b_l, a_{l+1} = act_l(z_l)       matmul.linear_forward
 *   head      δ_{L−1} = ∂ℓ/∂f, f = z_{L−1}                      likelihood.output_gradient
 *   backward  δ_{l−1} = (δ_l W_l) ⊙ act_{l−1}'(z_{l−1})        matmul.linear_backward
 * then, by what is asked:
 *   diag      Σ_s g_s ⊙ g_s = per layer (δ_l²)ᵀ [a_l², 1]       matmul.squared_gradient
 *   full      G = [g_s] rows, F tile = G[:, rows]ᵀ G          per_sample_grad, matmul.gram
 *   training  ∇ = per layer (1/n) δ_lᵀ [a_l, 1]; θ ← step      matmul.weight_gradient, optimizer
 * Fisher results are read back once per batch (the estimator sums batches in
 * float64 with compensation); training steps are only enqueued.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { GpuLimitError } from '../gpu/errors.js';
import { activationCode } from '../kernels/activation.js';
import { LikelihoodHead } from '../kernels/likelihood.js';
import { asShapes, DEFAULT_MATMUL_CONFIG, Matmul, type MatmulConfig, type MatmulShape } from '../kernels/matmul.js';
import { Optimizer } from '../kernels/optimizer.js';
import { PerSampleGrad } from '../kernels/per_sample_grad.js';
import type { Dataset } from '../model/data.js';
import type { Mlp } from '../model/mlp.js';
import { DATA_LABELS, type BatchStructure, type Engine, type GramTile, type LabelSource, type LoadedModel } from './engine.js';
import { matmulShapesFor } from './tuning.js';
import { biasCorrections, resolveOptimizer, type OptimizerSpec, type PenaltyGradient, type ResolvedOptimizer } from './optimizer.js';

/** Most samples per batch: bounds the float32 sums inside one batch (the estimator sums batches in float64). */
export const MAX_BATCH = 4096;
/** Device memory one batch's buffers may take, at most. */
const BATCH_MEMORY_BUDGET = 512 * 2 ** 20;
const F32 = 4;

/** The per-batch buffers, sized for `capacity` samples and reused across batches. */
interface BatchBuffers {
  capacity: number;
  x: GPUBuffer;
  targets: GPUBuffer;
  /** z_l and a_{l+1} = act(z_l) per layer, [capacity, out_l]. */
  z: GPUBuffer[];
  a: GPUBuffer[];
  /** δ_l = ∂ℓ/∂z_l per layer, [capacity, out_l]. */
  delta: GPUBuffer[];
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
}

export class GpuModel implements LoadedModel {
  #batch: BatchBuffers | undefined;
  #training: TrainingState | undefined;
  #released = false;

  private constructor(
    readonly gpu: GpuDevice,
    readonly model: Mlp,
    /** θ, [P], in parameter order. */
    readonly theta: GPUBuffer,
    readonly matmul: Matmul,
    readonly head: LikelihoodHead,
    readonly perSample: PerSampleGrad,
    readonly optimizer: Optimizer,
  ) {}

  static async load(gpu: GpuDevice, model: Mlp, shapes: MatmulConfig | readonly MatmulShape[] = DEFAULT_MATMUL_CONFIG): Promise<GpuModel> {
    const [matmul, head, perSample, optimizer] = await Promise.all([
      Matmul.create(gpu, shapes),
      LikelihoodHead.create(gpu, model.likelihood.spec.type),
      PerSampleGrad.create(gpu),
      Optimizer.create(gpu),
    ]);
    const theta = model.parameters();
    return new GpuModel(gpu, model, await gpu.storage(theta.byteLength, 'θ', theta), matmul, head, perSample, optimizer);
  }

  /** Floats per sample that one batch holds on the device. */
  #floatsPerSample(structure: BatchStructure): number {
    const m = this.model;
    let floats = m.inputs + m.targetWidth;
    for (const l of m.layers) floats += 3 * l.out;
    if (structure === 'full') floats += m.parameterCount;
    return floats;
  }

  maxBatch(structure: BatchStructure): number {
    const m = this.model;
    const binding = this.gpu.limits.maxStorageBufferBindingSize;
    const widest = Math.max(m.inputs, ...m.layers.map((l) => l.out), structure === 'full' ? m.parameterCount : 0);
    const byBinding = Math.floor(binding / (F32 * widest));
    const byBudget = Math.floor(BATCH_MEMORY_BUDGET / (F32 * this.#floatsPerSample(structure)));
    const byDispatch = this.gpu.limits.maxComputeWorkgroupsPerDimension;
    const b = Math.min(MAX_BATCH, byBinding, byBudget, byDispatch);
    if (b < 1) throw new GpuLimitError(`one sample's ${structure} work (${widest} floats in one buffer) exceeds the device's ${binding}-byte binding limit`);
    return b;
  }

  /** Rows of the P × P Gram matrix per tile: one tile's buffer fits one binding. */
  gramRowsPerTile(): number {
    const p = this.model.parameterCount;
    const rows = Math.min(p, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (F32 * p)), Math.floor(BATCH_MEMORY_BUDGET / (F32 * p)));
    if (rows < 1) throw new GpuLimitError(`a row of the ${p}×${p} Fisher exceeds the device's binding limit`);
    return rows;
  }

  async #buffers(n: number, structure: BatchStructure): Promise<BatchBuffers> {
    this.#assertLive();
    const max = this.maxBatch(structure);
    if (n > max) throw new GpuLimitError(`batch of ${n} exceeds the largest the device allows (${max})`);
    if (this.#batch && this.#batch.capacity >= n) return this.#batch;
    this.#releaseBatch();
    const m = this.model;
    const alloc = (width: number, label: string) => this.gpu.storage(n * width * F32, label);
    const batch: BatchBuffers = { capacity: n, x: await alloc(m.inputs, 'x'), targets: await alloc(m.targetWidth, 'targets'), z: [], a: [], delta: [] };
    for (const l of m.layers) {
      batch.z.push(await alloc(l.out, `${l.name}.z`));
      batch.a.push(await alloc(l.out, `${l.name}.a`));
      batch.delta.push(await alloc(l.out, `${l.name}.delta`));
    }
    this.#batch = batch;
    return batch;
  }

  /** Input of layer l: x for the first, else the activation below. */
  #input(buf: BatchBuffers, l: number): GPUBuffer {
    return l === 0 ? buf.x : buf.a[l - 1]!;
  }

  #encodeForward(step: Step, buf: BatchBuffers, n: number): void {
    this.model.layers.forEach((l, k) => {
      this.matmul.forward(step, {
        x: this.#input(buf, k),
        theta: this.theta,
        layer: this.model.layout.layers[k]!,
        z: buf.z[k]!,
        y: buf.a[k]!,
        batch: n,
        inputs: l.in,
        outputs: l.out,
        activation: activationCode(l.activation),
      });
    });
  }

  #encodeBackward(step: Step, buf: BatchBuffers, n: number, labels: LabelSource = DATA_LABELS): void {
    const layers = this.model.layers;
    const last = layers.length - 1;
    this.head.outputGradient(step, {
      labels,
      f: buf.z[last]!,
      targets: buf.targets,
      delta: buf.delta[last]!,
      batch: n,
      outputs: layers[last]!.out,
      targetWidth: this.model.targetWidth,
      precision: this.model.likelihood.precision,
    });
    for (let k = last; k > 0; k--) {
      const l = layers[k]!;
      this.matmul.backward(step, {
        delta: buf.delta[k]!,
        theta: this.theta,
        layer: this.model.layout.layers[k]!,
        zBelow: buf.z[k - 1]!,
        deltaBelow: buf.delta[k - 1]!,
        batch: n,
        inputs: l.in,
        outputs: l.out,
        activation: activationCode(layers[k - 1]!.activation),
      });
    }
  }

  /** Per layer, a θ-shaped result from δ_l and a_l (gradient or squared gradient). */
  #encodeParameterReduction(step: Step, buf: BatchBuffers, n: number, out: GPUBuffer, kind: 'gradient' | 'squared'): void {
    this.model.layers.forEach((l, k) => {
      const common = { delta: buf.delta[k]!, a: this.#input(buf, k), out, layer: this.model.layout.layers[k]!, batch: n, inputs: l.in, outputs: l.out };
      if (kind === 'gradient') this.matmul.weightGradient(step, { ...common, scale: 1 / n });
      else this.matmul.squaredGradient(step, common);
    });
  }

  async #upload(batch: Dataset, structure: BatchStructure): Promise<BatchBuffers> {
    const buf = await this.#buffers(batch.n, structure);
    this.gpu.write(buf.x, batch.x);
    this.gpu.write(buf.targets, batch.y);
    return buf;
  }

  async forward(x: Float32Array, n: number): Promise<Float32Array> {
    const m = this.model;
    const out = new Float32Array(n * m.outputs);
    const chunk = this.maxBatch('diag');
    for (let s0 = 0; s0 < n; s0 += chunk) {
      const s1 = Math.min(n, s0 + chunk);
      const buf = await this.#buffers(s1 - s0, 'diag');
      this.gpu.write(buf.x, x.subarray(s0 * m.inputs, s1 * m.inputs));
      await this.gpu.step('forward', (step) => this.#encodeForward(step, buf, s1 - s0));
      out.set(await this.gpu.readF32(buf.z[m.layers.length - 1]!, (s1 - s0) * m.outputs * F32), s0 * m.outputs);
    }
    return out;
  }

  /** Runs forward, head, backward and the per-sample rows into a new buffer g [n, P]. */
  async #perSampleGradients(batch: Dataset, labels: LabelSource): Promise<GPUBuffer> {
    const buf = await this.#upload(batch, 'full');
    const p = this.model.parameterCount;
    const g = await this.gpu.storage(batch.n * p * F32, 'per-sample gradients');
    await this.gpu.step('per-sample gradients', (step) => {
      this.#encodeForward(step, buf, batch.n);
      this.#encodeBackward(step, buf, batch.n, labels);
      this.model.layers.forEach((l, k) => {
        this.perSample.encode(step, {
          delta: buf.delta[k]!,
          a: this.#input(buf, k),
          g,
          batch: batch.n,
          inputs: l.in,
          outputs: l.out,
          parameters: p,
          offset: this.model.layout.layers[k]!.weightOffset,
        });
      });
    });
    return g;
  }

  async gradients(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float32Array> {
    const g = await this.#perSampleGradients(batch, labels);
    try {
      return await this.gpu.readF32(g, batch.n * this.model.parameterCount * F32);
    } finally {
      this.gpu.buffers.release(g);
    }
  }

  /** A θ-shaped reduction of the batch (its gradient or squared-gradient sum), read back. */
  async #reduce(batch: Dataset, kind: 'gradient' | 'squared', labels: LabelSource = DATA_LABELS): Promise<Float32Array> {
    const buf = await this.#upload(batch, 'diag');
    const p = this.model.parameterCount;
    const out = await this.gpu.storage(p * F32, kind === 'gradient' ? 'mean gradient' : 'squared-gradient sums');
    try {
      await this.gpu.step(kind === 'gradient' ? 'mean gradient' : 'squared-gradient sum', (step) => {
        this.#encodeForward(step, buf, batch.n);
        this.#encodeBackward(step, buf, batch.n, labels);
        this.#encodeParameterReduction(step, buf, batch.n, out, kind);
      });
      return await this.gpu.readF32(out, p * F32);
    } finally {
      this.gpu.buffers.release(out);
    }
  }

  squaredGradientSum(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float32Array> {
    return this.#reduce(batch, 'squared', labels);
  }

  meanGradient(batch: Dataset): Promise<Float32Array> {
    return this.#reduce(batch, 'gradient');
  }

  async gramSum(batch: Dataset, onTile: (tile: GramTile) => void, labels: LabelSource = DATA_LABELS): Promise<void> {
    const p = this.model.parameterCount;
    const g = await this.#perSampleGradients(batch, labels);
    const rowsPerTile = this.gramRowsPerTile();
    const tile = await this.gpu.storage(rowsPerTile * p * F32, 'gram tile');
    try {
      for (let row0 = 0; row0 < p; row0 += rowsPerTile) {
        const rows = Math.min(rowsPerTile, p - row0);
        await this.gpu.step(`gram rows ${row0}..${row0 + rows}`, (step) => {
          this.matmul.gram(step, { g, out: tile, batch: batch.n, parameters: p, row0, rows });
        });
        onTile({ row0, rows, values: await this.gpu.readF32(tile, rows * p * F32) });
      }
    } finally {
      this.gpu.buffers.release(g);
      this.gpu.buffers.release(tile);
    }
  }

  async setOptimizer(spec: OptimizerSpec, penalty?: PenaltyGradient): Promise<void> {
    this.#assertLive();
    const p = this.model.parameterCount;
    for (const [name, v] of Object.entries(penalty ?? {})) {
      if (v.length !== p) throw new RangeError(`penalty ${name} has length ${v.length}, expected P = ${p}`);
    }
    this.#releaseTraining();
    const zeros = new Float32Array(p);
    const buffer = (label: string, data: Float32Array) => this.gpu.storage(p * F32, label, data);
    this.#training = {
      optimizer: resolveOptimizer(spec),
      steps: 0,
      grad: await buffer('gradient', zeros),
      penaltyScale: await buffer('penalty scale', penalty?.scale ?? zeros),
      penaltyCenter: await buffer('penalty center', penalty?.center ?? zeros),
      moment1: await buffer('moment 1', zeros),
      moment2: await buffer('moment 2', zeros),
    };
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
      this.#encodeParameterReduction(step, buf, batch.n, t.grad, 'gradient');
      this.optimizer.encode(step, o.type, { ...t, theta: this.theta }, this.model.parameterCount, { ...o, ...biasCorrections(o, t.steps) });
    });
  }

  parameters(): Promise<Float32Array> {
    return this.gpu.readF32(this.theta, this.model.parameterCount * F32);
  }

  #releaseBatch(): void {
    const b = this.#batch;
    if (!b) return;
    for (const buf of [b.x, b.targets, ...b.z, ...b.a, ...b.delta]) this.gpu.buffers.release(buf);
    this.#batch = undefined;
  }

  #releaseTraining(): void {
    const t = this.#training;
    if (!t) return;
    for (const buf of [t.grad, t.penaltyScale, t.penaltyCenter, t.moment1, t.moment2]) this.gpu.buffers.release(buf);
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
   */
  constructor(
    readonly gpu: GpuDevice,
    shapes?: MatmulConfig | readonly MatmulShape[],
  ) {
    this.shapes = shapes === undefined ? matmulShapesFor(gpu) : asShapes(shapes);
  }

  /** The primary matmul shape. */
  get config(): MatmulConfig {
    return this.shapes[0]!.config;
  }

  describe(): string {
    return this.gpu.describe();
  }

  load(model: Mlp): Promise<GpuModel> {
    return GpuModel.load(this.gpu, model, this.shapes);
  }

  /** The device belongs to the caller; the engine leaves it open. */
  dispose(): void {}
}
