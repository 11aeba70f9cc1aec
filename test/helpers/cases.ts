/**
 * The one registry of test cases (as curvlinops' test/cases.py): networks
 * built from every layer type, with awkward sizes (1, primes, kernels 1/3/5,
 * stride 2, padding, dilation 2, groups > 1, odd images, T = 1 and T > 1),
 * each with a likelihood, a sample count and a batch size that does not
 * divide it. The parity, CPU and CLI tests draw from here.
 */
import type { LikelihoodSpec } from '../../src/model/likelihoods.js';
import { Network } from '../../src/model/network.js';
import { Rng } from '../../src/model/random.js';

export interface NetworkCase {
  name: string;
  spec: { input: number[]; layers: unknown[]; likelihood: LikelihoodSpec };
  /** Samples of the case's data, and a batch size that does not divide them. */
  n: number;
  batch: number;
}

const lin = (name: string, i: number, o: number, extra: object = {}) => ({ type: 'linear', name, in: i, out: o, ...extra });
const conv = (name: string, i: number, o: number, k: number | number[], extra: object = {}) => ({ type: 'conv2d', name, in_channels: i, out_channels: o, kernel_size: k, ...extra });

export const NETWORK_CASES: NetworkCase[] = [
  {
    name: 'linear on [T, D] with layer norm per position',
    spec: {
      input: [5, 7],
      layers: [lin('seq', 7, 3), { type: 'gelu' }, { type: 'layernorm', name: 'norm', normalized_shape: 3 }, { type: 'flatten' }, lin('head', 15, 4)],
      likelihood: { type: 'categorical' },
    },
    n: 23,
    batch: 7,
  },
  {
    name: 'conv2d: padding, a [3, 1] kernel, stride 2, dilation 2, no bias',
    spec: {
      input: [2, 7, 6],
      layers: [
        conv('c1', 2, 3, 3, { padding: 1 }),
        { type: 'relu' },
        conv('c2', 3, 4, [3, 1], { stride: 2, dilation: [2, 1], padding: [2, 0], bias: false }),
        { type: 'tanh' },
        { type: 'flatten' },
        lin('head', 48, 3),
      ],
      likelihood: { type: 'categorical' },
    },
    n: 19,
    batch: 8,
  },
  {
    name: 'conv2d: groups, kernels 1 and 5, sigmoid',
    spec: {
      input: [4, 5, 5],
      layers: [
        conv('g1', 4, 6, 3, { groups: 2, padding: 1 }),
        { type: 'sigmoid' },
        conv('g2', 6, 6, 1, { groups: 3 }),
        conv('g3', 6, 2, 5),
        { type: 'flatten' },
        lin('head', 2, 3),
      ],
      likelihood: { type: 'gaussian', sigma: 0.8 },
    },
    n: 17,
    batch: 5,
  },
  {
    name: 'max and average pooling with stride and padding',
    spec: {
      input: [3, 9, 8],
      layers: [
        conv('c', 3, 2, 2),
        { type: 'maxpool2d', kernel_size: 3, stride: 2, padding: 1 },
        { type: 'relu' },
        { type: 'avgpool2d', kernel_size: [2, 3], stride: 1, padding: 1 },
        { type: 'flatten' },
        lin('head', 40, 4),
      ],
      likelihood: { type: 'categorical' },
    },
    n: 21,
    batch: 6,
  },
  {
    name: 'residual blocks with layer norm over [C, H, W] and over W',
    spec: {
      input: [2, 6, 6],
      layers: [
        conv('stem', 2, 4, 3, { padding: 1 }),
        { type: 'relu' },
        { type: 'residual', layers: [conv('b1.c1', 4, 4, 3, { padding: 1 }), { type: 'relu' }, conv('b1.c2', 4, 4, 3, { padding: 1 })] },
        { type: 'layernorm', name: 'b1.norm', normalized_shape: [4, 6, 6] },
        // Normalising rows of 6 values right after a ReLU would make some rows nearly constant: layer
        // norm is ill-conditioned there (1/√(σ² + eps) up to 316), and float32 can be no closer than
        // that condition number allows. Before the ReLU the rows are well spread.
        { type: 'residual', layers: [{ type: 'layernorm', name: 'b2.norm', normalized_shape: 6 }, { type: 'residual', layers: [{ type: 'identity' }] }] },
        { type: 'relu' },
        { type: 'avgpool2d', kernel_size: 6 },
        { type: 'flatten' },
        lin('head', 4, 3),
      ],
      likelihood: { type: 'categorical' },
    },
    n: 13,
    batch: 4,
  },
  {
    name: 'flat residual MLP, a layer norm without affine, bernoulli',
    spec: {
      input: [5],
      layers: [
        { type: 'tanh' },
        lin('fc1', 5, 6),
        { type: 'residual', layers: [lin('r.fc1', 6, 6), { type: 'relu' }, lin('r.fc2', 6, 6, { bias: false })] },
        { type: 'layernorm', normalized_shape: 6, elementwise_affine: false },
        lin('out', 6, 2),
      ],
      likelihood: { type: 'bernoulli' },
    },
    n: 29,
    batch: 11,
  },
];

/**
 * A case's network with every parameter drawn at random (PyTorch's
 * initialisation, plus noise so that layer norm's γ and β are not 1 and 0).
 */
export function caseModel(c: NetworkCase, seed: number): Network {
  const model = Network.random(c.spec, seed);
  const rng = new Rng(seed + 1);
  return model.withParameters(model.parameters().map((v) => v + 0.2 * rng.normal()));
}

/** The layer types a case's spec uses. */
export function caseLayerTypes(c: NetworkCase): string[] {
  const types = new Set<string>();
  const visit = (layers: unknown[]) => {
    for (const l of layers as { type: string; layers?: unknown[] }[]) {
      types.add(l.type);
      if (l.layers) visit(l.layers);
    }
  };
  visit(c.spec.layers);
  return [...types];
}
