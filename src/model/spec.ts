/**
 * The model spec (DESIGN.md §4): JSON with the per-sample input shape, a
 * list of layers and a likelihood,
 *
 *   {"input": [1, 28, 28],
 *    "layers": [{"type": "conv2d", "name": "conv1", "in_channels": 1, …},
 *               {"type": "relu"}, …, {"type": "linear", "name": "head", "in": 64, "out": 10}],
 *    "likelihood": {"type": "categorical"}}
 *
 * parsed into layer nodes (src/layers). `input` may be left out when the
 * first layer is linear (a flat input of its `in`): version-1 specs, linear
 * layers and activations only, are valid unchanged. The last layer's output
 * is f, the likelihood's natural parameter (logits or mean): it must be flat,
 * and no activation may follow the output layer.
 */
import type { ActivationName } from '../layers/activations.js';
import { InputError } from '../layers/errors.js';
import { isRecord } from '../layers/fields.js';
import type { LayerNode, Shape } from '../layers/layer.js';
import { layerToJson, parseLayerList, walkLayers } from '../layers/registry.js';
import { ACTIVATION_NAMES } from '../layers/activations.js';
import { LIKELIHOOD_TYPES, type LikelihoodSpec } from './likelihoods.js';

export interface ModelSpec {
  /** The per-sample input shape. */
  input: Shape;
  layers: LayerNode[];
  likelihood: LikelihoodSpec;
}

/** Specs that came out of parseSpec: only these are taken without validation. */
const PARSED = new WeakSet<object>();

export function isParsedSpec(v: unknown): v is ModelSpec {
  return typeof v === 'object' && v !== null && PARSED.has(v);
}

/** Validates a parsed JSON value as a model spec; `source` names it in errors. */
export function parseSpec(json: unknown, source = 'model spec'): ModelSpec {
  if (!isRecord(json)) throw new InputError(`${source}: expected a JSON object with "layers" and "likelihood"`);
  const unknown = Object.keys(json).filter((k) => !['input', 'layers', 'likelihood'].includes(k));
  if (unknown.length > 0) throw new InputError(`${source}: unknown field ${unknown.map((k) => `"${k}"`).join(', ')} (known: input, layers, likelihood)`);
  const { layers: rawLayers, likelihood: rawLik } = json;
  if (!Array.isArray(rawLayers) || rawLayers.length === 0) throw new InputError(`${source}: "layers" must be a non-empty list`);
  const input = parseInput(json['input'], rawLayers[0], source);
  const layers = parseLayerList(rawLayers, source, input);
  const last = layers[layers.length - 1]!;
  if ((ACTIVATION_NAMES as readonly string[]).includes(last.type) && last.type !== 'identity') {
    throw new InputError(`${source}: the output layer's result goes to the likelihood as logits or mean, so no ${last.type} may follow it`);
  }
  if (last.output.length !== 1) {
    throw new InputError(`${source}: the last layer gives [${last.output.join(', ')}] per sample; the likelihood needs a flat output (add a flatten and a linear layer)`);
  }
  if ([...walkLayers(layers)].every((l) => l.parameters.length === 0)) throw new InputError(`${source}: the model has no parameters`);
  const spec: ModelSpec = { input, layers, likelihood: parseLikelihood(rawLik, source, last.output[0]!) };
  PARSED.add(spec);
  return spec;
}

function parseInput(raw: unknown, first: unknown, source: string): Shape {
  if (raw === undefined) {
    if (isRecord(first) && first['type'] === 'linear' && typeof first['in'] === 'number') return [first['in']];
    throw new InputError(`${source}: "input" (the per-sample input shape) is needed unless the first layer is linear`);
  }
  const shape = typeof raw === 'number' ? [raw] : raw;
  if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 1)) {
    throw new InputError(`${source}: "input" must be a list of positive integers (e.g. [1, 28, 28]), got ${JSON.stringify(raw)}`);
  }
  return shape as number[];
}

function parseLikelihood(raw: unknown, source: string, outputs: number): LikelihoodSpec {
  if (!isRecord(raw) || typeof raw['type'] !== 'string') throw new InputError(`${source}: "likelihood" must be an object with a "type"`);
  const type = raw['type'];
  switch (type) {
    case 'categorical':
      if (outputs < 2) throw new InputError(`${source}: a categorical likelihood needs at least 2 outputs, the model has ${outputs}`);
      return { type };
    case 'bernoulli':
      return { type };
    case 'gaussian': {
      const sigma = raw['sigma'] ?? 1;
      if (typeof sigma !== 'number' || !(sigma > 0) || !Number.isFinite(sigma)) {
        throw new InputError(`${source}: gaussian "sigma" must be a positive number, got ${JSON.stringify(sigma)}`);
      }
      return { type, sigma };
    }
    default:
      throw new InputError(`${source}: unknown likelihood "${type}" (expected one of ${LIKELIHOOD_TYPES.join(', ')})`);
  }
}

/** The spec back as JSON, in the input format. */
export function specToJson(spec: ModelSpec): unknown {
  return { input: [...spec.input], layers: spec.layers.map(layerToJson), likelihood: spec.likelihood };
}

/**
 * The JSON spec of an MLP with the given widths (input first), `activation`
 * between its linear layers fc1, fc2, …, and a likelihood: the examples',
 * the demo's and the benchmark's models.
 */
export function mlpSpec(widths: readonly number[], activation: ActivationName = 'relu', likelihood: LikelihoodSpec = { type: 'categorical' }): unknown {
  const layers: unknown[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    layers.push({ type: 'linear', name: `fc${l + 1}`, in: widths[l], out: widths[l + 1] });
    if (l + 2 < widths.length && activation !== 'identity') layers.push({ type: activation });
  }
  return { layers, likelihood };
}
