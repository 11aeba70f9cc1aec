/**
 * The reference engine: float64, plain loops, one sample at a time, written
 * to be read and trusted, not to be fast. Every GPU result is checked against
 * it. Conventions as in engine.ts: W row-major [out, in], z = W a + b,
 * a' = act(z); δ = ∂ℓ/∂z; ∂ℓ/∂W[o, i] = δ[o] · a[i], ∂ℓ/∂b[o] = δ[o].
 */
import { ACTIVATIONS } from '../model/activations.js';
import type { Dataset } from '../model/data.js';
import type { Mlp } from '../model/mlp.js';
import { counterUniform } from '../model/random.js';
import { DATA_LABELS, type BatchStructure, type Engine, type GramTile, type LabelSource, type LoadedModel } from './engine.js';
import { biasCorrections, resolveOptimizer, type OptimizerSpec, type PenaltyGradient, type ResolvedOptimizer } from './optimizer.js';

interface Layer64 {
  in: number;
  out: number;
  w: Float64Array;
  b: Float64Array;
  f: (z: number) => number;
  df: (z: number) => number;
}

/** One sample's forward pass: inputs a[0] = x, pre-activations z[l], outputs a[l + 1]. */
interface Trace {
  a: Float64Array[];
  z: Float64Array[];
}

export class CpuModel implements LoadedModel {
  /** θ in float64; each layer's w and b are views into it, so a training step updates them. */
  readonly #theta: Float64Array;
  readonly #layers: Layer64[];
  #training: { optimizer: ResolvedOptimizer; steps: number; penalty: PenaltyGradient | undefined; m: Float64Array; v: Float64Array } | undefined;

  /**
   * @param theta float64 parameters in parameter order to use instead of the
   *   model's float32 weights (finite differences in tests need them exact).
   */
  constructor(
    readonly model: Mlp,
    theta?: Float64Array,
  ) {
    const t = Float64Array.from(theta ?? model.parameters());
    if (t.length !== model.parameterCount) throw new RangeError(`θ has length ${t.length}, the model has ${model.parameterCount} parameters`);
    this.#theta = t;
    this.#layers = model.layers.map((l, k) => {
      const { weightOffset, biasOffset } = model.layout.layers[k]!;
      return {
        in: l.in,
        out: l.out,
        w: t.subarray(weightOffset, weightOffset + l.out * l.in),
        b: t.subarray(biasOffset, biasOffset + l.out),
        f: ACTIVATIONS[l.activation].f,
        df: ACTIVATIONS[l.activation].df,
      };
    });
  }

  maxBatch(structure: BatchStructure): number {
    // Bounded only by host memory for the [n, P] gradients of one batch.
    const p = this.model.parameterCount;
    return structure === 'diag' ? 1024 : Math.max(1, Math.min(1024, Math.floor(2 ** 26 / p)));
  }

  /** Forward pass of one input row. */
  trace(x: ArrayLike<number>): Trace {
    const a: Float64Array[] = [Float64Array.from(x)];
    const z: Float64Array[] = [];
    for (const L of this.#layers) {
      const input = a[a.length - 1]!;
      const zl = new Float64Array(L.out);
      const al = new Float64Array(L.out);
      for (let o = 0; o < L.out; o++) {
        let s = L.b[o]!;
        for (let i = 0; i < L.in; i++) s += L.w[o * L.in + i]! * input[i]!;
        zl[o] = s;
        al[o] = L.f(s);
      }
      z.push(zl);
      a.push(al);
    }
    return { a, z };
  }

  /**
   * ∇θ of a loss whose gradient with respect to the network output f is
   * `outputGrad`, back-propagated through a recorded trace, into `g` [P].
   */
  backpropagate(t: Trace, outputGrad: Float64Array, g: Float64Array): void {
    const slices = this.model.layout.layers;
    let delta = outputGrad;
    for (let l = this.#layers.length - 1; l >= 0; l--) {
      const L = this.#layers[l]!;
      const { weightOffset, biasOffset } = slices[l]!;
      const input = t.a[l]!;
      for (let o = 0; o < L.out; o++) {
        for (let i = 0; i < L.in; i++) g[weightOffset + o * L.in + i] = delta[o]! * input[i]!;
        g[biasOffset + o] = delta[o]!;
      }
      if (l === 0) break;
      const below = this.#layers[l - 1]!;
      const zPrev = t.z[l - 1]!;
      const next = new Float64Array(L.in);
      for (let i = 0; i < L.in; i++) {
        let s = 0;
        for (let o = 0; o < L.out; o++) s += L.w[o * L.in + i]! * delta[o]!;
        next[i] = s * below.df(zPrev[i]!);
      }
      delta = next;
    }
  }

  /** g_n for sample row `x` with target row `y`, into `g` [P]. */
  sampleGradient(x: ArrayLike<number>, y: ArrayLike<number>, g: Float64Array): void {
    this.#labelledGradient(x, y, DATA_LABELS, 0, g);
  }

  /** The gradient of sample `index` of the dataset (row x, targets y) under a label source. */
  #labelledGradient(x: ArrayLike<number>, y: ArrayLike<number>, labels: LabelSource, index: number, g: Float64Array): void {
    const lik = this.model.likelihood;
    const t = this.trace(x);
    const f = t.z[t.z.length - 1]!;
    const dF = new Float64Array(f.length);
    if (labels.kind === 'data') lik.outputGradient(f, y, dF);
    else if (labels.kind === 'sampled') {
      const yHat = lik.sample(f, (j) => counterUniform(labels.seed, labels.firstSample + index, labels.draw, j));
      lik.outputGradient(f, yHat, dF);
    } else lik.factorColumn(f, labels.column, dF);
    this.backpropagate(t, dF, g);
  }

  /** g for row s of the batch. */
  #batchGradient(batch: Dataset, s: number, labels: LabelSource, g: Float64Array): void {
    const [x, y] = rows(batch, s);
    this.#labelledGradient(x, y, labels, s, g);
  }

  /** ℓ_n = −log p(y | x, θ) of one sample. */
  sampleLoss(x: ArrayLike<number>, y: ArrayLike<number>): number {
    const t = this.trace(x);
    return this.model.likelihood.loss(t.z[t.z.length - 1]!, y);
  }

  async forward(x: Float32Array, n: number): Promise<Float64Array> {
    const out = new Float64Array(n * this.model.outputs);
    for (let s = 0; s < n; s++) {
      const t = this.trace(x.subarray(s * this.model.inputs, (s + 1) * this.model.inputs));
      out.set(t.z[t.z.length - 1]!, s * this.model.outputs);
    }
    return out;
  }

  async gradients(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float64Array> {
    const p = this.model.parameterCount;
    const out = new Float64Array(batch.n * p);
    for (let s = 0; s < batch.n; s++) this.#batchGradient(batch, s, labels, out.subarray(s * p, (s + 1) * p));
    return out;
  }

  async squaredGradientSum(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float64Array> {
    const p = this.model.parameterCount;
    const sum = new Float64Array(p);
    const g = new Float64Array(p);
    for (let s = 0; s < batch.n; s++) {
      this.#batchGradient(batch, s, labels, g);
      for (let k = 0; k < p; k++) sum[k]! += g[k]! * g[k]!;
    }
    return sum;
  }

  async gramSum(batch: Dataset, onTile: (tile: GramTile) => void, labels: LabelSource = DATA_LABELS): Promise<void> {
    const p = this.model.parameterCount;
    const sum = new Float64Array(p * p);
    const g = new Float64Array(p);
    for (let s = 0; s < batch.n; s++) {
      this.#batchGradient(batch, s, labels, g);
      // The upper triangle only, as the interface asks: half the work.
      for (let r = 0; r < p; r++) {
        const gr = g[r]!;
        if (gr === 0) continue;
        for (let c = r; c < p; c++) sum[r * p + c]! += gr * g[c]!;
      }
    }
    onTile({ row0: 0, rows: p, values: sum });
  }

  async meanGradient(batch: Dataset): Promise<Float64Array> {
    const p = this.model.parameterCount;
    const sum = new Float64Array(p);
    const g = new Float64Array(p);
    for (let s = 0; s < batch.n; s++) {
      this.sampleGradient(...rows(batch, s), g);
      for (let k = 0; k < p; k++) sum[k]! += g[k]!;
    }
    return sum.map((v) => v / batch.n);
  }

  async setOptimizer(spec: OptimizerSpec, penalty?: PenaltyGradient): Promise<void> {
    const p = this.model.parameterCount;
    this.#training = { optimizer: resolveOptimizer(spec), steps: 0, penalty, m: new Float64Array(p), v: new Float64Array(p) };
  }

  /** The same update as shaders/optimizer.wgsl, in float64. */
  async trainStep(batch: Dataset): Promise<void> {
    const t = this.#training;
    if (!t) throw new Error('trainStep before setOptimizer');
    const grad = await this.meanGradient(batch);
    t.steps++;
    const o = t.optimizer;
    const { correction1, correction2 } = biasCorrections(o, t.steps);
    const theta = this.#theta;
    for (let i = 0; i < theta.length; i++) {
      const g = grad[i]! + (t.penalty ? t.penalty.scale[i]! * theta[i]! - t.penalty.center[i]! : 0);
      if (o.type === 'sgd') {
        t.m[i] = o.momentum * t.m[i]! + g;
        theta[i]! -= o.learningRate * t.m[i]!;
      } else {
        t.m[i] = o.beta1 * t.m[i]! + (1 - o.beta1) * g;
        t.v[i] = o.beta2 * t.v[i]! + (1 - o.beta2) * g * g;
        theta[i]! -= (o.learningRate * (t.m[i]! / correction1)) / (Math.sqrt(t.v[i]! / correction2) + o.epsilon);
      }
    }
  }

  async parameters(): Promise<Float64Array> {
    return this.#theta.slice();
  }

  release(): void {}
}

function rows(batch: Dataset, s: number): [Float32Array, Float32Array] {
  return [
    batch.x.subarray(s * batch.inputs, (s + 1) * batch.inputs),
    batch.y.subarray(s * batch.targetWidth, (s + 1) * batch.targetWidth),
  ];
}

export class CpuEngine implements Engine {
  readonly backend = 'cpu' as const;

  describe(): string {
    return 'CPU reference (float64, single-threaded)';
  }

  async load(model: Mlp): Promise<CpuModel> {
    return new CpuModel(model);
  }

  dispose(): void {}
}
