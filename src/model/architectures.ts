/**
 * The built-in architectures, as model specs (DESIGN.md §4): the examples'
 * (`fisher example --arch`), the benchmark's and the tests'.
 *
 *   mlp     linear layers with ReLUs between, widths given
 *   cnn     LeNet-like on [1, 28, 28]: conv 5×5 (6) · relu · maxpool 2 · conv 5×5 (16) · relu ·
 *           maxpool 2 · flatten · linear 400→120 · relu · linear 120→10
 *   resnet  a conv stem 3×3 stride 2 to 16 channels on [1, 28, 28], four residual blocks of two
 *           3×3 convs (16 channels, 14×14), each followed by a layer norm over [16, 14, 14] and a
 *           relu, global average pooling, flatten, linear 16→10
 */
import { mlpSpec } from './spec.js';

export const ARCHITECTURES = ['mlp', 'cnn', 'resnet'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

const conv = (name: string, i: number, o: number, k: number, extra: object = {}) => ({ type: 'conv2d', name, in_channels: i, out_channels: o, kernel_size: k, ...extra });

export function cnnSpec(): unknown {
  return {
    input: [1, 28, 28],
    layers: [
      conv('conv1', 1, 6, 5, { padding: 2 }),
      { type: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
      conv('conv2', 6, 16, 5),
      { type: 'relu' },
      { type: 'maxpool2d', kernel_size: 2 },
      { type: 'flatten' },
      { type: 'linear', name: 'fc1', in: 400, out: 120 },
      { type: 'relu' },
      { type: 'linear', name: 'fc2', in: 120, out: 10 },
    ],
    likelihood: { type: 'categorical' },
  };
}

export function resnetSpec(blocks = 4, channels = 16): unknown {
  const layers: unknown[] = [conv('stem', 1, channels, 3, { stride: 2, padding: 1 }), { type: 'relu' }];
  for (let b = 1; b <= blocks; b++) {
    layers.push(
      { type: 'residual', layers: [conv(`block${b}.conv1`, channels, channels, 3, { padding: 1 }), { type: 'relu' }, conv(`block${b}.conv2`, channels, channels, 3, { padding: 1 })] },
      { type: 'layernorm', name: `block${b}.norm`, normalized_shape: [channels, 14, 14] },
      { type: 'relu' },
    );
  }
  layers.push({ type: 'avgpool2d', kernel_size: 14 }, { type: 'flatten' }, { type: 'linear', name: 'head', in: channels, out: 10 });
  return { input: [1, 28, 28], layers, likelihood: { type: 'categorical' } };
}

/** The spec of an architecture; `widths` (input first) for mlp. */
export function architectureSpec(arch: Architecture, widths: readonly number[] = [784, 100, 10]): unknown {
  switch (arch) {
    case 'mlp':
      return mlpSpec(widths);
    case 'cnn':
      return cnnSpec();
    case 'resnet':
      return resnetSpec();
  }
}
