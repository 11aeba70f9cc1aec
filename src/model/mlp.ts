/**
 * A multi-layer perceptron with its weights: the model every estimator takes.
 * Weights are float32, as loaded from safetensors in PyTorch's layout.
 */
import { readFile } from 'node:fs/promises';
import type { Tensor } from '../io/dtypes.js';
import { readSafetensors } from '../io/safetensors.js';
import { assertFinite, InputError } from './errors.js';
import { parameterLayout, type ParameterLayout } from './layout.js';
import { likelihoodOf, type Likelihood } from './likelihoods.js';
import { Rng } from './random.js';
import { parseSpec, specToJson, type LinearLayer, type ModelSpec } from './spec.js';

export interface LayerWeights {
  /** W, row-major [out, in]. */
  weight: Float32Array;
  /** b, [out]. */
  bias: Float32Array;
}

export class Mlp {
  readonly layout: ParameterLayout;
  readonly likelihood: Likelihood;

  private constructor(
    readonly spec: ModelSpec,
    readonly weights: readonly LayerWeights[],
  ) {
    this.layout = parameterLayout(spec.layers);
    this.likelihood = likelihoodOf(spec.likelihood);
  }

  get layers(): readonly LinearLayer[] {
    return this.spec.layers;
  }
  get inputs(): number {
    return this.spec.layers[0]!.in;
  }
  get outputs(): number {
    return this.spec.layers[this.spec.layers.length - 1]!.out;
  }
  /** P, the number of parameters. */
  get parameterCount(): number {
    return this.layout.total;
  }
  /** Values per sample in the targets: 1 for class labels, else one per output. */
  get targetWidth(): number {
    return this.likelihood.targets === 'labels' ? 1 : this.outputs;
  }

  /**
   * Builds a model from a spec (parsed or JSON) and tensors named
   * `<layer>.weight` [out, in] and `<layer>.bias` [out], float32.
   */
  static fromSpec(spec: ModelSpec | unknown, weights: ReadonlyMap<string, Tensor>, source = 'weights'): Mlp {
    const parsed = isModelSpec(spec) ? spec : parseSpec(spec);
    const layout = parameterLayout(parsed.layers);
    const expected = new Set(layout.entries.map((e) => e.name));
    for (const name of weights.keys()) {
      if (!expected.has(name)) throw new InputError(`${source}: unexpected tensor "${name}" (the model has ${[...expected].join(', ')})`);
    }
    const tensors = new Map<string, Float32Array>();
    for (const e of layout.entries) {
      const t = weights.get(e.name);
      if (!t) throw new InputError(`${source}: missing tensor "${e.name}" of shape [${e.shape.join(', ')}]`);
      if (t.dtype !== 'F32') throw new InputError(`${source}: tensor "${e.name}" is ${t.dtype}, expected F32`);
      if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        throw new InputError(`${source}: tensor "${e.name}" has shape [${t.shape.join(', ')}], expected [${e.shape.join(', ')}]`);
      }
      assertFinite(t.data as Float32Array, `${source}: tensor "${e.name}"`, t.shape);
      tensors.set(e.name, t.data as Float32Array);
    }
    const layerWeights = parsed.layers.map((l) => ({ weight: tensors.get(`${l.name}.weight`)!, bias: tensors.get(`${l.name}.bias`)! }));
    return new Mlp(parsed, layerWeights);
  }

  /** Loads a model spec (JSON) and its weights (safetensors). */
  static async load(specPath: string, weightsPath: string): Promise<Mlp> {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(specPath, 'utf8'));
    } catch (e) {
      throw new InputError(`${specPath}: ${(e as Error).message}`);
    }
    const spec = parseSpec(json, specPath);
    const { tensors } = await readSafetensors(weightsPath);
    return Mlp.fromSpec(spec, tensors, weightsPath);
  }

  /**
   * A model with PyTorch's default initialisation scale (uniform in ±1/√in),
   * drawn from a seeded generator: for examples, tests and benchmarks.
   */
  static random(spec: ModelSpec | unknown, seed: number): Mlp {
    const parsed = isModelSpec(spec) ? spec : parseSpec(spec);
    const rng = new Rng(seed);
    const uniform = (n: number, bound: number) => Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * bound);
    return new Mlp(
      parsed,
      parsed.layers.map((l) => ({ weight: uniform(l.out * l.in, 1 / Math.sqrt(l.in)), bias: uniform(l.out, 1 / Math.sqrt(l.in)) })),
    );
  }

  /** The same architecture with other weights. */
  withWeights(weights: readonly LayerWeights[]): Mlp {
    return new Mlp(this.spec, weights);
  }

  /** The same architecture with θ (in parameter order) as its weights, rounded to float32. */
  withParameters(theta: ArrayLike<number>): Mlp {
    if (theta.length !== this.parameterCount) throw new RangeError(`θ has length ${theta.length}, the model has ${this.parameterCount} parameters`);
    const t = Float32Array.from(theta as ArrayLike<number>);
    assertFinite(t, 'θ');
    return new Mlp(
      this.spec,
      this.layers.map((l, k) => {
        const { weightOffset, biasOffset } = this.layout.layers[k]!;
        return { weight: t.slice(weightOffset, weightOffset + l.out * l.in), bias: t.slice(biasOffset, biasOffset + l.out) };
      }),
    );
  }

  /** θ as one flat vector in parameter order. */
  parameters(): Float32Array {
    const theta = new Float32Array(this.parameterCount);
    this.weights.forEach((w, l) => {
      const slice = this.layout.layers[l]!;
      theta.set(w.weight, slice.weightOffset);
      theta.set(w.bias, slice.biasOffset);
    });
    return theta;
  }

  /** The weights as named tensors, ready for safetensors. */
  tensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    this.layers.forEach((l, i) => {
      out.set(`${l.name}.weight`, { dtype: 'F32', shape: [l.out, l.in], data: this.weights[i]!.weight });
      out.set(`${l.name}.bias`, { dtype: 'F32', shape: [l.out], data: this.weights[i]!.bias });
    });
    return out;
  }

  /** The spec in its JSON file format. */
  specJson(): unknown {
    return specToJson(this.spec);
  }
}

function isModelSpec(v: unknown): v is ModelSpec {
  return (
    typeof v === 'object' &&
    v !== null &&
    Array.isArray((v as ModelSpec).layers) &&
    (v as ModelSpec).layers.every((l) => typeof l === 'object' && l !== null && 'activation' in l)
  );
}
