/**
 * A network with its weights: the model every estimator takes. The
 * architecture is the parsed spec (a sequence of layers, with residual
 * blocks); the weights are one float32 vector θ in parameter order
 * (layout.ts), loaded from and saved to safetensors under PyTorch's
 * `state_dict` names.
 */
import { readFile } from 'node:fs/promises';
import type { Tensor } from '../io/dtypes.js';
import { readSafetensors } from '../io/safetensors.js';
import { assertFinite, InputError } from '../layers/errors.js';
import type { LayerNode, Shape } from '../layers/layer.js';
import { sizeOf } from '../layers/layer.js';
import { parameterLayout, type ParameterLayout } from './layout.js';
import { likelihoodOf, type Likelihood } from './likelihoods.js';
import { Rng } from './random.js';
import { isParsedSpec, parseSpec, specToJson, type ModelSpec } from './spec.js';

export class Network {
  readonly layout: ParameterLayout;
  readonly likelihood: Likelihood;
  readonly #theta: Float32Array;

  private constructor(
    readonly spec: ModelSpec,
    theta: Float32Array,
  ) {
    this.layout = parameterLayout(spec.layers);
    this.likelihood = likelihoodOf(spec.likelihood);
    if (theta.length !== this.layout.total) throw new RangeError(`θ has length ${theta.length}, the model has ${this.layout.total} parameters`);
    this.#theta = theta;
  }

  /** The top-level layers, in order. */
  get layers(): readonly LayerNode[] {
    return this.spec.layers;
  }
  /** The per-sample input shape. */
  get inputShape(): Shape {
    return this.spec.input;
  }
  /** Values per sample in the input. */
  get inputs(): number {
    return sizeOf(this.spec.input);
  }
  /** Values per sample in the output f (logits or mean). */
  get outputs(): number {
    return this.spec.layers[this.spec.layers.length - 1]!.output[0]!;
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
   * Builds a model from a spec (parsed, or JSON to validate) and float32
   * tensors named as PyTorch's `state_dict` (`<layer>.weight`, `<layer>.bias`).
   */
  static fromSpec(spec: ModelSpec | unknown, weights: ReadonlyMap<string, Tensor>, source = 'weights'): Network {
    const parsed = isParsedSpec(spec) ? spec : parseSpec(spec);
    const layout = parameterLayout(parsed.layers);
    const expected = new Set(layout.entries.map((e) => e.name));
    for (const name of weights.keys()) {
      if (!expected.has(name)) throw new InputError(`${source}: unexpected tensor "${name}" (the model has ${[...expected].join(', ')})`);
    }
    const theta = new Float32Array(layout.total);
    for (const e of layout.entries) {
      const t = weights.get(e.name);
      if (!t) throw new InputError(`${source}: missing tensor "${e.name}" of shape [${e.shape.join(', ')}]`);
      if (t.dtype !== 'F32') throw new InputError(`${source}: tensor "${e.name}" is ${t.dtype}, expected F32`);
      if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        throw new InputError(`${source}: tensor "${e.name}" has shape [${t.shape.join(', ')}], expected [${e.shape.join(', ')}]`);
      }
      assertFinite(t.data as Float32Array, `${source}: tensor "${e.name}"`, t.shape);
      theta.set(t.data as Float32Array, e.offset);
    }
    return new Network(parsed, theta);
  }

  /** Loads a model spec (JSON) and its weights (safetensors). */
  static async load(specPath: string, weightsPath: string): Promise<Network> {
    let json: unknown;
    try {
      json = JSON.parse(await readFile(specPath, 'utf8'));
    } catch (e) {
      throw new InputError(`${specPath}: ${(e as Error).message}`);
    }
    const spec = parseSpec(json, specPath);
    const { tensors } = await readSafetensors(weightsPath);
    return Network.fromSpec(spec, tensors, weightsPath);
  }

  /**
   * A model with PyTorch's default initialisation (uniform in ±1/√fan_in;
   * layer norm's γ = 1, β = 0), drawn from a seeded generator: for examples,
   * tests and benchmarks.
   */
  static random(spec: ModelSpec | unknown, seed: number): Network {
    const parsed = isParsedSpec(spec) ? spec : parseSpec(spec);
    const rng = new Rng(seed);
    const layout = parameterLayout(parsed.layers);
    const theta = new Float32Array(layout.total);
    for (const { node, offset } of layout.layers) {
      let at = offset;
      for (const p of node.parameters) {
        const size = sizeOf(p.shape);
        const init = p.init;
        for (let k = 0; k < size; k++) theta[at + k] = 'uniform' in init ? (2 * rng.uniform() - 1) * init.uniform : init.constant;
        at += size;
      }
    }
    return new Network(parsed, theta);
  }

  /** The same architecture with θ (in parameter order) as its weights, rounded to float32. */
  withParameters(theta: ArrayLike<number>): Network {
    if (theta.length !== this.parameterCount) throw new RangeError(`θ has length ${theta.length}, the model has ${this.parameterCount} parameters`);
    const t = Float32Array.from(theta as ArrayLike<number>);
    assertFinite(t, 'θ');
    return new Network(this.spec, t);
  }

  /** θ as one flat vector in parameter order (a copy). */
  parameters(): Float32Array {
    return this.#theta.slice();
  }

  /** One parameter tensor's values (a view), by its name. */
  tensor(name: string): Float32Array {
    const e = this.layout.entries.find((x) => x.name === name);
    if (!e) throw new RangeError(`no parameter "${name}" (the model has ${this.layout.entries.map((x) => x.name).join(', ')})`);
    return this.#theta.subarray(e.offset, e.offset + e.size);
  }

  /** The weights as named tensors, ready for safetensors. */
  tensors(): Map<string, Tensor> {
    return new Map(this.layout.entries.map((e) => [e.name, { dtype: 'F32', shape: e.shape, data: this.#theta.slice(e.offset, e.offset + e.size) }]));
  }

  /** The spec in its JSON file format. */
  specJson(): unknown {
    return specToJson(this.spec);
  }
}

/** @deprecated The model was an MLP before layers were modules; use Network. */
export const Mlp = Network;
/** @deprecated Use Network. */
export type Mlp = Network;
