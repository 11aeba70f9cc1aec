/**
 * The model spec (DESIGN.md §4): JSON with a list of layers and a likelihood,
 *
 *   {"layers": [{"type": "linear", "name": "fc1", "in": 784, "out": 100},
 *               {"type": "relu"}, …],
 *    "likelihood": {"type": "categorical"}}
 *
 * parsed into a normalised form: linear layers, each with the activation that
 * follows it (identity when none). The last linear layer's output is f, the
 * likelihood's natural parameter (logits or mean), so no activation other than
 * identity may follow it.
 */
import { ACTIVATION_NAMES, isActivationName, type ActivationName } from './activations.js';
import { InputError } from './errors.js';
import { LIKELIHOOD_TYPES, type LikelihoodSpec } from './likelihoods.js';

/** A linear layer z = W a + b, W of shape [out, in], followed by `activation`. */
export interface LinearLayer {
  name: string;
  in: number;
  out: number;
  activation: ActivationName;
}

export interface ModelSpec {
  layers: LinearLayer[];
  likelihood: LikelihoodSpec;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) throw new InputError(`${what} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

const NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

/** Validates a parsed JSON value as a model spec; `source` names it in errors. */
export function parseSpec(json: unknown, source = 'model spec'): ModelSpec {
  if (!isRecord(json)) throw new InputError(`${source}: expected a JSON object with "layers" and "likelihood"`);
  const { layers: rawLayers, likelihood: rawLik } = json;
  if (!Array.isArray(rawLayers) || rawLayers.length === 0) throw new InputError(`${source}: "layers" must be a non-empty list`);

  const layers: LinearLayer[] = [];
  let activationFollows = false;
  rawLayers.forEach((raw, index) => {
    const where = `${source}: layers[${index}]`;
    if (!isRecord(raw) || typeof raw['type'] !== 'string') throw new InputError(`${where} must be an object with a "type"`);
    const type = raw['type'];
    if (type === 'linear') {
      const name = raw['name'] === undefined ? `fc${layers.length + 1}` : raw['name'];
      if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw new InputError(`${where}: name ${JSON.stringify(name)} is not a valid tensor name`);
      if (layers.some((l) => l.name === name)) throw new InputError(`${where}: layer name "${name}" is used twice`);
      const inputs = positiveInt(raw['in'], `${where}.in`);
      const outputs = positiveInt(raw['out'], `${where}.out`);
      const prev = layers[layers.length - 1];
      if (prev && prev.out !== inputs) throw new InputError(`${where}: "${name}" takes ${inputs} inputs but "${prev.name}" gives ${prev.out}`);
      layers.push({ name, in: inputs, out: outputs, activation: 'identity' });
      activationFollows = false;
      return;
    }
    if (isActivationName(type)) {
      const prev = layers[layers.length - 1];
      if (!prev) throw new InputError(`${where}: the first layer must be linear, not "${type}"`);
      if (activationFollows) throw new InputError(`${where}: two activations in a row after "${prev.name}"`);
      prev.activation = type;
      activationFollows = true;
      return;
    }
    throw new InputError(`${where}: unknown layer type "${type}" (expected linear or one of ${ACTIVATION_NAMES.join(', ')})`);
  });
  const last = layers[layers.length - 1]!;
  if (last.activation !== 'identity') {
    throw new InputError(
      `${source}: "${last.name}" is the output layer; its output goes to the likelihood as logits or mean, so no ${last.activation} may follow it`,
    );
  }
  return { layers, likelihood: parseLikelihood(rawLik, source, last.out) };
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
  const layers: unknown[] = [];
  for (const l of spec.layers) {
    layers.push({ type: 'linear', name: l.name, in: l.in, out: l.out });
    if (l.activation !== 'identity') layers.push({ type: l.activation });
  }
  return { layers, likelihood: spec.likelihood };
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
