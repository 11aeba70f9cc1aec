/** Random models and data for tests, seeded, with awkward sizes by default. */
import { Dataset } from '../../src/model/data.js';
import type { ActivationName } from '../../src/layers/activations.js';
import type { LikelihoodSpec } from '../../src/model/likelihoods.js';
import { Network } from '../../src/model/network.js';
import { Rng } from '../../src/model/random.js';
import { mlpSpec } from '../../src/model/spec.js';

export { mlpSpec };

export function randomModel(widths: number[], activation: ActivationName, likelihood: LikelihoodSpec, seed: number): Network {
  return Network.random(mlpSpec(widths, activation, likelihood), seed);
}

/** Inputs ~ N(0, 1); targets valid for the model's likelihood. */
export function randomData(model: Network, n: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const x = rng.normals(n * model.inputs);
  const w = model.targetWidth;
  const y = new Float32Array(n * w);
  const type = model.likelihood.spec.type;
  for (let i = 0; i < y.length; i++) {
    y[i] = type === 'categorical' ? rng.int(model.outputs) : type === 'bernoulli' ? rng.int(2) : rng.normal();
  }
  return new Dataset(x, y, n, model.inputs, w);
}
