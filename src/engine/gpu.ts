/**
 * The GPU engine: drives the kernels of src/kernels over one batch at a time.
 *
 * Per batch (layers l = 0…L−1, a_0 = x):
 *   forward   z_l = a_l W_lᵀ + b_l, a_{l+1} = act_l(z_l)       matmul.linear_forward
 *   head      δ_{L−1} = ∂ℓ/∂f, f = z_{L−1}                      likelihood.output_gradient
 *   backward  δ_{l−1} = (δ_l W_l) ⊙ act_{l−1}'(z_{l−1})        matmul.linear_backward
 * then, by structure:
 *   diag      S_l = (δ_l²)ᵀ [a_l², 1], per layer, no per-sample gradient
 *                                                               matmul.squared_gradient
 *   full      G = [g_s] rows (per_sample_grad), F tile = G[:, rows]ᵀ G   matmul.gram
 * Each result is read back once per batch; the estimator sums batches in
 * float64 with compensation.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { GpuLimitError } from '../gpu/errors.js';
import { activationCode } from '../kernels/activation.js';
import { LikelihoodHead } from '../kernels/likelihood.js';
import { DEFAULT_MATMUL_CONFIG, Matmul, type MatmulConfig } from '../kernels/matmul.js';
import { PerSampleGrad } from '../kernels/per_sample_grad.js';
import type { Dataset } from '../model/data.js';
import type { Mlp } from '../model/mlp.js';
import type { BatchStructure, Engine, GramTile, LoadedModel } from './engine.js';

/** Most samples per batch: bounds the float32 sums inside one batch (the estimator sums batches in float64). */
export const MAX_BATCH = 4096;
/** Device memory one batch's buffers may take, at most. */
const BATCH_MEMORY_BUDGET = 512 * 2 ** 20;
const F32 = 4;

interface LayerBuffers {
  w: GPUBuffer;
  b: GPUBuffer;
}

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

export class GpuModel implements LoadedModel {
  #batch: BatchBuffers | undefined;
  #released = false;

  private constructor(
    readonly gpu: GpuDevice,
    readonly model: Mlp,
    readonly layers: LayerBuffers[],
    readonly matmul: Matmul,
    readonly head: LikelihoodHead,
    readonly perSample: PerSampleGrad,
  ) {}

  static async load(gpu: GpuDevice, model: Mlp, config: MatmulConfig = DEFAULT_MATMUL_CONFIG): Promise<GpuModel> {
    const codes = model.layers.map((l) => activationCode(l.activation));
    const [matmul, head, perSample] = await Promise.all([
      Matmul.create(gpu, [...codes, activationCode('identity')], config),
      LikelihoodHead.create(gpu, model.likelihood.spec.type),
      PerSampleGrad.create(gpu),
    ]);
    const layers: LayerBuffers[] = [];
    for (const [l, w] of model.weights.entries()) {
      const name = model.layers[l]!.name;
      layers.push({ w: await gpu.storage(w.weight.byteLength, `${name}.weight`, w.weight), b: await gpu.storage(w.bias.byteLength, `${name}.bias`, w.bias) });
    }
    return new GpuModel(gpu, model, layers, matmul, head, perSample);
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

  async #buffers(n: number, structureHint: BatchStructure): Promise<BatchBuffers> {
    this.#assertLive();
    if (n > this.maxBatch(structureHint)) throw new GpuLimitError(`batch of ${n} exceeds the largest the device allows (${this.maxBatch(structureHint)})`);
    if (this.#batch && this.#batch.capacity >= n) return this.#batch;
    this.#releaseBatch();
    const m = this.model;
    const size = (width: number) => n * width * F32;
    const alloc = (width: number, label: string) => this.gpu.storage(size(width), label);
    const batch: BatchBuffers = {
      capacity: n,
      x: await alloc(m.inputs, 'x'),
      targets: await alloc(m.targetWidth, 'targets'),
      z: [],
      a: [],
      delta: [],
    };
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
        w: this.layers[k]!.w,
        bias: this.layers[k]!.b,
        z: buf.z[k]!,
        y: buf.a[k]!,
        batch: n,
        inputs: l.in,
        outputs: l.out,
        activation: activationCode(l.activation),
      });
    });
  }

  #encodeBackward(step: Step, buf: BatchBuffers, n: number): void {
    const layers = this.model.layers;
    const last = layers.length - 1;
    const lik = this.model.likelihood;
    this.head.outputGradient(step, {
      f: buf.z[last]!,
      targets: buf.targets,
      delta: buf.delta[last]!,
      batch: n,
      outputs: layers[last]!.out,
      targetWidth: this.model.targetWidth,
      precision: lik.precision,
    });
    for (let k = last; k > 0; k--) {
      const l = layers[k]!;
      this.matmul.backward(step, {
        delta: buf.delta[k]!,
        w: this.layers[k]!.w,
        zBelow: buf.z[k - 1]!,
        deltaBelow: buf.delta[k - 1]!,
        batch: n,
        inputs: l.in,
        outputs: l.out,
        activation: activationCode(layers[k - 1]!.activation),
      });
    }
  }

  #upload(buf: BatchBuffers, batch: Dataset): void {
    this.gpu.write(buf.x, batch.x);
    this.gpu.write(buf.targets, batch.y);
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

  /** Runs forward, head, backward and the per-sample rows into `g` [n, P]. */
  async #perSampleGradients(batch: Dataset): Promise<GPUBuffer> {
    const buf = await this.#buffers(batch.n, 'full');
    const p = this.model.parameterCount;
    const g = await this.gpu.storage(batch.n * p * F32, 'per-sample gradients');
    this.#upload(buf, batch);
    await this.gpu.step('per-sample gradients', (step) => {
      this.#encodeForward(step, buf, batch.n);
      this.#encodeBackward(step, buf, batch.n);
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

  async gradients(batch: Dataset): Promise<Float32Array> {
    const g = await this.#perSampleGradients(batch);
    try {
      return await this.gpu.readF32(g, batch.n * this.model.parameterCount * F32);
    } finally {
      this.gpu.buffers.release(g);
    }
  }

  async squaredGradientSum(batch: Dataset): Promise<Float32Array> {
    const m = this.model;
    const buf = await this.#buffers(batch.n, 'diag');
    const p = m.parameterCount;
    // Each layer's S [out, in + 1] lands at the layer's offset of one buffer, read once.
    const sums = await this.gpu.storage(p * F32, 'squared-gradient sums');
    const perLayer = await Promise.all(m.layers.map((l) => this.gpu.storage(l.out * (l.in + 1) * F32, `${l.name}.S`)));
    this.#upload(buf, batch);
    try {
      await this.gpu.step('squared-gradient sum', (step) => {
        this.#encodeForward(step, buf, batch.n);
        this.#encodeBackward(step, buf, batch.n);
        m.layers.forEach((l, k) => {
          this.matmul.squaredGradient(step, { delta: buf.delta[k]!, a: this.#input(buf, k), out: perLayer[k]!, batch: batch.n, inputs: l.in, outputs: l.out });
          step.copyAfter(perLayer[k]!, 0, sums, m.layout.layers[k]!.weightOffset * F32, l.out * (l.in + 1) * F32);
        });
      });
      const raw = await this.gpu.readF32(sums, p * F32);
      // S[o, i] (i < in) is W[o, i]'s entry; S[o, in] is b[o]'s.
      const out = new Float32Array(p);
      m.layers.forEach((l, k) => {
        const { weightOffset, biasOffset } = m.layout.layers[k]!;
        for (let o = 0; o < l.out; o++) {
          const row = weightOffset + o * (l.in + 1);
          out.set(raw.subarray(row, row + l.in), weightOffset + o * l.in);
          out[biasOffset + o] = raw[row + l.in]!;
        }
      });
      return out;
    } finally {
      this.gpu.buffers.release(sums);
      for (const b of perLayer) this.gpu.buffers.release(b);
    }
  }

  async gramSum(batch: Dataset, onTile: (tile: GramTile) => void): Promise<void> {
    const p = this.model.parameterCount;
    const g = await this.#perSampleGradients(batch);
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

  #releaseBatch(): void {
    const b = this.#batch;
    if (!b) return;
    for (const buf of [b.x, b.targets, ...b.z, ...b.a, ...b.delta]) this.gpu.buffers.release(buf);
    this.#batch = undefined;
  }

  #assertLive(): void {
    if (this.#released) throw new Error('this GPU model was released');
  }

  release(): void {
    if (this.#released) return;
    this.#releaseBatch();
    for (const l of this.layers) {
      this.gpu.buffers.release(l.w);
      this.gpu.buffers.release(l.b);
    }
    this.#released = true;
  }
}

export class GpuEngine implements Engine {
  readonly backend = 'gpu' as const;

  constructor(
    readonly gpu: GpuDevice,
    readonly config: MatmulConfig = DEFAULT_MATMUL_CONFIG,
  ) {}

  describe(): string {
    return this.gpu.describe();
  }

  load(model: Mlp): Promise<GpuModel> {
    return GpuModel.load(this.gpu, model, this.config);
  }

  /** The device belongs to the caller; the engine leaves it open. */
  dispose(): void {}
}
