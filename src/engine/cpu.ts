/**
 * The reference engine: float64, plain loops, one sample at a time, written
 * to be read and trusted, not to be fast. Every GPU result is checked against
 * it. It walks the network with each layer's CPU twin (src/layers): one
 * forward pass per sample, then one backward pass per virtual sample.
 * Conventions as in engine.ts.
 */
import type { CpuRunner, CpuTrace, LayerNode } from '../layers/layer.js';
import { sizeOf } from '../layers/layer.js';
import { kroneckerGeometry, layerTypeOf } from '../layers/registry.js';
import type { Dataset } from '../model/data.js';
import { layerOffsets } from '../model/layout.js';
import type { Network } from '../model/network.js';
import { counterUniform } from '../model/random.js';
import { DATA_LABELS, type BatchStructure, type BatchMemory, type BatchOptions, type Engine, type GramBlock, type GramTile, type KroneckerBasis, type KroneckerMode, type KroneckerPartial, type LabelSource, type LoadedModel } from './engine.js';
import { biasCorrections, penaltyColumns, resolveOptimizer, type OptimizerSpec, type PenaltyGradient, type ResolvedOptimizer } from './optimizer.js';

/** Views of one layer's parameters (weight, bias) into a θ-shaped vector. */
function parameterViews(node: LayerNode, offset: number, v: Float64Array): Float64Array[] {
  let at = offset;
  return node.parameters.map((p) => {
    const size = sizeOf(p.shape);
    const view = v.subarray(at, at + size);
    at += size;
    return view;
  });
}

export class CpuModel implements LoadedModel {
  /** θ in float64; a training step updates it in place. */
  readonly #theta: Float64Array;
  readonly #offsets: Map<LayerNode, number>;
  readonly #weights = new Map<LayerNode, Float64Array[]>();
  #training: { optimizer: ResolvedOptimizer; steps: number; penalty: PenaltyGradient | undefined; m: Float64Array; v: Float64Array } | undefined;

  /**
   * @param theta float64 parameters in parameter order to use instead of the
   *   model's float32 weights (finite differences in tests need them exact).
   */
  constructor(
    readonly model: Network,
    theta?: Float64Array,
  ) {
    const t = Float64Array.from(theta ?? model.parameters());
    if (t.length !== model.parameterCount) throw new RangeError(`θ has length ${t.length}, the model has ${model.parameterCount} parameters`);
    this.#theta = t;
    this.#offsets = layerOffsets(model.layout);
    for (const [node, offset] of this.#offsets) this.#weights.set(node, parameterViews(node, offset, t));
  }

  maxBatch(structure: BatchStructure, virtualSamples = 1, o: Omit<BatchOptions, 'virtualSamples'> = {}): number {
    const mem = this.memory(structure, { ...o, virtualSamples });
    return o.budget === undefined ? mem.maxBatch : Math.max(0, Math.min(mem.maxBatch, Math.floor((o.budget - mem.fixed) / mem.perSample)));
  }

  /**
   * Host memory of one batch: one sample at a time, so a sample's input,
   * trace and gradient (per sample, float64) and the batch's partial sums
   * (fixed: the size of the structure's result). The batch only bounds how
   * often the estimator hears from the engine.
   */
  memory(structure: BatchStructure, o: BatchOptions = {}): BatchMemory {
    const p = this.model.parameterCount;
    const layers = this.model.layout.layers;
    const kron = layers.map((l) => kroneckerGeometry(l.node));
    const partial: Record<BatchStructure, number> = {
      diag: p,
      full: p * p,
      block: layers.reduce((s, l) => s + l.size * l.size, 0),
      kfac: kron.reduce((s, k, i) => s + (k ? (k.inputs + 1) ** 2 + k.outputs ** 2 : layers[i]!.size), 0),
      ekfac: kron.reduce((s, k) => s + (k ? k.outputs * (k.inputs + 1) : 0), 0),
      lowrank: (o.sketch ?? 0) * p,
    };
    const perSample = 8 * (this.model.inputs + this.model.targetWidth);
    return { perSample, fixed: 8 * (2 * p + partial[structure]), maxBatch: 1024, shared: { perSample, fixed: 16 * p } };
  }

  /**
   * A runner writing the per-sample gradients of a backward pass into `g`
   * [P], showing `onLayer` each parametrised layer's input and output gradient.
   */
  #runner(g?: Float64Array, onLayer?: LayerVisitor): CpuRunner {
    const scratch = new Map<LayerNode, Float64Array[]>();
    const runner: CpuRunner = {
      forward: (nodes, x) => {
        const steps: CpuTrace['steps'] = [];
        let v = x;
        for (const node of nodes) {
          const { y, saved } = layerTypeOf(node).cpu.forward(node, this.#weights.get(node) ?? [], v, runner);
          steps.push({ x: v, y, saved });
          v = y;
        }
        return { nodes, steps };
      },
      backward: (trace, dy, wantDx) => {
        let d: Float64Array | undefined = dy;
        for (let k = trace.nodes.length - 1; k >= 0; k--) {
          const node = trace.nodes[k]!;
          const offset = this.#offsets.get(node);
          let grads: Float64Array[] = [];
          if (offset !== undefined) {
            onLayer?.(node, trace.steps[k]!.x, d!);
            if (g) grads = parameterViews(node, offset, g);
            else {
              if (!scratch.has(node)) scratch.set(node, node.parameters.map((p) => new Float64Array(sizeOf(p.shape))));
              grads = scratch.get(node)!;
            }
          }
          d = layerTypeOf(node).cpu.backward(node, this.#weights.get(node) ?? [], { ...trace.steps[k]!, dy: d! }, grads, k > 0 || wantDx, runner);
        }
        return d;
      },
    };
    return runner;
  }

  /** One sample's forward pass through the whole network. */
  trace(x: ArrayLike<number>): CpuTrace {
    return this.#runner().forward(this.model.layers, Float64Array.from(x));
  }

  /** The network output f of a trace. */
  output(t: CpuTrace): Float64Array {
    return t.steps[t.steps.length - 1]!.y;
  }

  /**
   * ∇θ of a loss whose gradient with respect to the network output f is
   * `outputGrad`, back-propagated through a recorded trace, into `g` [P].
   */
  backpropagate(t: CpuTrace, outputGrad: Float64Array, g: Float64Array, onLayer?: LayerVisitor): void {
    this.#runner(g, onLayer).backward(t, outputGrad, false);
  }

  /** g_n for sample row `x` with target row `y`, into `g` [P]. */
  sampleGradient(x: ArrayLike<number>, y: ArrayLike<number>, g: Float64Array): void {
    this.#labelledGradient(this.trace(x), y, DATA_LABELS, 0, g);
  }

  /** The gradient of sample `index` of the dataset (its trace, targets y) under a label source. */
  #labelledGradient(t: CpuTrace, y: ArrayLike<number>, labels: LabelSource, index: number, g: Float64Array, onLayer?: LayerVisitor): void {
    const lik = this.model.likelihood;
    const f = this.output(t);
    const dF = new Float64Array(f.length);
    if (labels.kind === 'data') lik.outputGradient(f, y, dF);
    else if (labels.kind === 'sampled') {
      const yHat = lik.sample(f, (j) => counterUniform(labels.seed, labels.firstSample + index, labels.draw, j));
      lik.outputGradient(f, yHat, dF);
    } else lik.factorColumn(f, labels.column, dF);
    this.backpropagate(t, dF, g, onLayer);
  }

  /** Calls `visit(g)` with the gradient of every (sample, label source) of the batch: one forward pass per sample. */
  #eachGradient(batch: Dataset, labels: readonly LabelSource[], visit: (g: Float64Array, s: number) => void): void {
    const g = new Float64Array(this.model.parameterCount);
    for (let s = 0; s < batch.n; s++) {
      const [x, y] = rows(batch, s);
      const t = this.trace(x);
      for (const l of labels) {
        this.#labelledGradient(t, y, l, s, g);
        visit(g, s);
      }
    }
  }

  /** ℓ_n = −log p(y | x, θ) of one sample. */
  sampleLoss(x: ArrayLike<number>, y: ArrayLike<number>): number {
    return this.model.likelihood.loss(this.output(this.trace(x)), y);
  }

  async forward(x: Float32Array, n: number): Promise<Float64Array> {
    const m = this.model;
    const out = new Float64Array(n * m.outputs);
    for (let s = 0; s < n; s++) out.set(this.output(this.trace(x.subarray(s * m.inputs, (s + 1) * m.inputs))), s * m.outputs);
    return out;
  }

  async gradients(batch: Dataset, labels: LabelSource = DATA_LABELS): Promise<Float64Array> {
    const p = this.model.parameterCount;
    const out = new Float64Array(batch.n * p);
    this.#eachGradient(batch, [labels], (g, s) => out.set(g, s * p));
    return out;
  }

  async squaredGradientSum(batch: Dataset, labels: readonly LabelSource[] = [DATA_LABELS]): Promise<Float64Array> {
    const sum = new Float64Array(this.model.parameterCount);
    this.#eachGradient(batch, labels, (g) => {
      for (let k = 0; k < g.length; k++) sum[k]! += g[k]! * g[k]!;
    });
    return sum;
  }

  async gramSum(batch: Dataset, onTile: (tile: GramTile) => void, labels: readonly LabelSource[] = [DATA_LABELS], blocks?: readonly GramBlock[]): Promise<void> {
    const wanted = blocks ?? [{ offset: 0, size: this.model.parameterCount }];
    const ranges = wanted.map((b) => b.rows ?? { start: 0, count: b.size });
    const sums = wanted.map((b, k) => new Float64Array(ranges[k]!.count * b.size));
    this.#eachGradient(batch, labels, (g) => {
      wanted.forEach(({ offset, size }, k) => {
        const sum = sums[k]!;
        const { start, count } = ranges[k]!;
        // The upper triangle only, as the interface asks: half the work.
        for (let r = start; r < start + count; r++) {
          const gr = g[offset + r]!;
          if (gr === 0) continue;
          for (let c = r; c < size; c++) sum[(r - start) * size + c]! += gr * g[offset + c]!;
        }
      });
    });
    wanted.forEach((_, k) => onTile({ block: k, row0: ranges[k]!.start, rows: ranges[k]!.count, values: sums[k]! }));
  }

  async kroneckerSums(batch: Dataset, labels: readonly LabelSource[], mode: KroneckerMode): Promise<KroneckerPartial[]> {
    const layers = this.model.layout.layers;
    const index = new Map(layers.map((l, k) => [l.node, k]));
    const parts: KroneckerPartial[] = layers.map((l) => {
      const k = kroneckerGeometry(l.node);
      if (!k) return { kind: 'diagonal', squares: new Float64Array(l.size) };
      return { kind: 'kronecker', rows: 0, aa: new Float64Array(k.inputs ** 2), a: new Float64Array(k.inputs), gg: new Float64Array(k.outputs ** 2) };
    });
    const g = new Float64Array(this.model.parameterCount);
    for (let s = 0; s < batch.n; s++) {
      const [x, y] = rows(batch, s);
      const t = this.trace(x);
      labels.forEach((l, v) => {
        this.#labelledGradient(t, y, l, s, g, (node, input, dy) => {
          const part = parts[index.get(node)!]!;
          if (part.kind !== 'kronecker') return;
          const twin = layerTypeOf(node).kronecker!;
          const k = twin.geometry(node)!;
          // ā once per sample (the forward pass's), δ for every label source.
          if (v === 0) {
            const a = positionRows(twin.inputs(node, input), k.positions, k.inputs, mode === 'reduce' ? 1 / k.positions : undefined);
            addOuterProducts(part.aa, a, k.inputs);
            for (let r = 0; r < a.length / k.inputs; r++) for (let i = 0; i < k.inputs; i++) part.a[i]! += a[r * k.inputs + i]!;
            part.rows += a.length / k.inputs;
          }
          addOuterProducts(part.gg, positionRows(twin.outputGradients(node, dy), k.positions, k.outputs, mode === 'reduce' ? 1 : undefined), k.outputs);
        });
        layers.forEach((slice, k) => {
          const part = parts[k]!;
          if (part.kind !== 'diagonal') return;
          for (let i = 0; i < slice.size; i++) part.squares[i]! += g[slice.offset + i]! ** 2;
        });
      });
    }
    return parts;
  }

  async rotatedSquareSums(batch: Dataset, labels: readonly LabelSource[], bases: readonly (KroneckerBasis | undefined)[]): Promise<(Float64Array | undefined)[]> {
    const layers = this.model.layout.layers;
    const index = new Map(layers.map((l, k) => [l.node, k]));
    const sums = bases.map((b, k) => {
      if (!b) return undefined;
      const g = kroneckerGeometry(layers[k]!.node);
      if (!g) throw new Error(`layer ${layers[k]!.name} is not Kronecker-factored`);
      return new Float64Array(g.outputs * (g.inputs + (g.bias ? 1 : 0)));
    });
    const g = new Float64Array(this.model.parameterCount);
    for (let s = 0; s < batch.n; s++) {
      const [x, y] = rows(batch, s);
      const t = this.trace(x);
      for (const l of labels) {
        this.#labelledGradient(t, y, l, s, g, (node, input, dy) => {
          const k = index.get(node)!;
          const [basis, sum] = [bases[k], sums[k]];
          if (!basis || !sum) return;
          const twin = layerTypeOf(node).kronecker!;
          const geo = twin.geometry(node)!;
          const ia = geo.inputs + (geo.bias ? 1 : 0);
          // G_n = Σ_t δ_t [ā_t, 1]ᵀ, then Q_Gᵀ G_n Q_A, squared.
          const a = twin.inputs(node, input);
          const d = twin.outputGradients(node, dy);
          const gn = new Float64Array(geo.outputs * ia);
          for (let p = 0; p < geo.positions; p++) {
            for (let o = 0; o < geo.outputs; o++) {
              const dv = d[p * geo.outputs + o]!;
              for (let i = 0; i < geo.inputs; i++) gn[o * ia + i]! += dv * a[p * geo.inputs + i]!;
              if (geo.bias) gn[o * ia + geo.inputs]! += dv;
            }
          }
          const r = rotate(basis, gn, geo.outputs, ia);
          for (let j = 0; j < r.length; j++) sum[j]! += r[j]! ** 2;
        });
      }
    }
    return sums;
  }

  async sketchSum(batch: Dataset, labels: readonly LabelSource[], omega: Float32Array, k: number): Promise<Float64Array> {
    const p = this.model.parameterCount;
    if (omega.length !== k * p) throw new RangeError(`the sketch basis has ${omega.length} entries, expected ${k}·${p}`);
    const sum = new Float64Array(k * p);
    this.#eachGradient(batch, labels, (g) => {
      for (let j = 0; j < k; j++) {
        let d = 0;
        for (let i = 0; i < p; i++) d += omega[j * p + i]! * g[i]!;
        if (d === 0) continue;
        for (let i = 0; i < p; i++) sum[j * p + i]! += d * g[i]!;
      }
    });
    return sum;
  }

  async meanGradient(batch: Dataset): Promise<Float64Array> {
    const sum = new Float64Array(this.model.parameterCount);
    this.#eachGradient(batch, [DATA_LABELS], (g) => {
      for (let k = 0; k < g.length; k++) sum[k]! += g[k]!;
    });
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
    if (t.penalty) addStructuredPenalty(t.penalty, this.#theta, grad);
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

  endPass(): void {}

  release(): void {}
}

/** Q_Gᵀ M Q_A for M [out, ia]. */
function rotate(b: KroneckerBasis, m: Float64Array, out: number, ia: number): Float64Array {
  const left = new Float64Array(out * ia);
  for (let k = 0; k < out; k++) for (let o = 0; o < out; o++) {
    const q = b.qg[o * out + k]!;
    if (q === 0) continue;
    for (let j = 0; j < ia; j++) left[k * ia + j]! += q * m[o * ia + j]!;
  }
  const r = new Float64Array(out * ia);
  for (let k = 0; k < out; k++) for (let i = 0; i < ia; i++) {
    const v = left[k * ia + i]!;
    if (v === 0) continue;
    for (let j = 0; j < ia; j++) r[k * ia + j]! += v * b.qa[i * ia + j]!;
  }
  return r;
}

/** Sees each parametrised layer's input x and the gradient dy at its output during a backward pass. */
type LayerVisitor = (node: LayerNode, x: Float64Array, dy: Float64Array) => void;

/** rows [T, width] as they are, or (with `scale`) their sum over T times scale: [1, width]. */
function positionRows(rows: Float64Array, positions: number, width: number, scale?: number): Float64Array {
  if (scale === undefined) return rows;
  const out = new Float64Array(width);
  for (let t = 0; t < positions; t++) for (let j = 0; j < width; j++) out[j]! += rows[t * width + j]!;
  return out.map((v) => v * scale);
}

/** sum += Σ_r row_r row_rᵀ over the rows of `rows` [R, width], upper triangle only. */
function addOuterProducts(sum: Float32Array | Float64Array, rows: Float64Array, width: number): void {
  for (let r = 0; r < rows.length / width; r++) {
    for (let i = 0; i < width; i++) {
      const v = rows[r * width + i]!;
      if (v === 0) continue;
      for (let j = i; j < width; j++) sum[i * width + j]! += v * rows[r * width + j]!;
    }
  }
}

function rows(batch: Dataset, s: number): [Float32Array, Float32Array] {
  return [
    batch.x.subarray(s * batch.inputs, (s + 1) * batch.inputs),
    batch.y.subarray(s * batch.targetWidth, (s + 1) * batch.targetWidth),
  ];
}

/**
 * The structured penalty's gradient added into `grad`, in float64, as the
 * GPU engine adds it: weight · G D A per K-FAC term (D = θ_l − θ*_l as the
 * augmented [W | b]), weight · M (θ − θ*) per dense term.
 */
function addStructuredPenalty(penalty: PenaltyGradient, theta: Float64Array, grad: Float64Array): void {
  for (const k of penalty.kronecker ?? []) {
    const ia = penaltyColumns(k);
    const at = (o: number, i: number) => k.offset + (i < k.inputs ? o * k.inputs + i : k.outputs * k.inputs + o);
    const d = new Float64Array(k.outputs * ia);
    for (let o = 0; o < k.outputs; o++) for (let i = 0; i < ia; i++) d[o * ia + i] = theta[at(o, i)]! - k.center[at(o, i) - k.offset]!;
    const da = new Float64Array(k.outputs * ia);
    for (let o = 0; o < k.outputs; o++) for (let j = 0; j < ia; j++) {
      const x = d[o * ia + j]!;
      if (x !== 0) for (let i = 0; i < ia; i++) da[o * ia + i]! += x * k.a[j * ia + i]!;
    }
    for (let o = 0; o < k.outputs; o++) for (let q = 0; q < k.outputs; q++) {
      const x = k.g[o * k.outputs + q]!;
      if (x !== 0) for (let i = 0; i < ia; i++) grad[at(o, i)]! += k.weight * x * da[q * ia + i]!;
    }
  }
  const p = theta.length;
  for (const m of penalty.dense ?? []) {
    const d = Float64Array.from(theta, (x, i) => x - m.center[i]!);
    for (let r = 0; r < p; r++) {
      let s = 0;
      for (let c = 0; c < p; c++) s += m.matrix[r * p + c]! * d[c]!;
      grad[r]! += m.weight * s;
    }
  }
}

export class CpuEngine implements Engine {
  readonly backend = 'cpu' as const;

  describe(): string {
    return 'CPU reference (float64, single-threaded)';
  }

  async load(model: Network): Promise<CpuModel> {
    return new CpuModel(model);
  }

  dispose(): void {}
}
