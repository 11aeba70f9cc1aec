/**
 * The peers of the benchmark (TF.js, jax-js, PyTorch) are written for MLPs:
 * linear layers on flat inputs, each followed by at most one activation.
 * This reads a network as such a list, or says why it is not one.
 */
import type { ActivationName } from '../layers/activations.js';
import { ACTIVATION_NAMES } from '../layers/activations.js';
import type { LinearFields } from '../layers/linear.js';
import type { Network } from '../model/network.js';

export interface MlpLayer {
  in: number;
  out: number;
  /** The activation after the layer (identity for none). */
  activation: ActivationName;
  /** W [out, in] row-major and b [out], views of the model's θ. */
  weight: Float32Array;
  bias: Float32Array;
}

export function mlpLayers(model: Network): MlpLayer[] | string {
  const layers: MlpLayer[] = [];
  for (const node of model.layers) {
    if (node.type === 'linear') {
      const f = node.fields as LinearFields;
      if (!f.bias || node.input.length !== 1) return `layer ${node.name} is not a linear layer with a bias on a flat input`;
      layers.push({ in: f.in, out: f.out, activation: 'identity', weight: model.tensor(`${node.name}.weight`), bias: model.tensor(`${node.name}.bias`) });
    } else if ((ACTIVATION_NAMES as readonly string[]).includes(node.type) && layers.length > 0 && layers[layers.length - 1]!.activation === 'identity') {
      layers[layers.length - 1]!.activation = node.type as ActivationName;
    } else return `a ${node.type} layer: the peers are written for MLPs`;
  }
  return layers;
}

/** The MLP layers of a model the caller knows to be an MLP. */
export function mlpOf(model: Network): MlpLayer[] {
  const layers = mlpLayers(model);
  if (typeof layers === 'string') throw new Error(layers);
  return layers;
}
