/**
 * Any network of fisher-gpu's spec (DESIGN.md §4) as TF.js ops, for the
 * per-sample tf.grads loop: the model a TF.js user would write by hand, one
 * sample at a time, with the parameters in PyTorch's layouts (their
 * gradients come back in those layouts, in fisher-gpu's parameter order).
 *
 * TF.js convolves and pools channels-last; the tensors here stay
 * channels-first as the spec is, and each conv2d or pool transposes around
 * its op. What TF.js cannot express (grouped convolutions, dilation with a
 * stride, padded pooling whose divisor PyTorch counts differently) is named,
 * so the peer skips rather than computes something else.
 */
import type { Conv2dFields } from '../layers/conv2d.js';
import type { LayerNode } from '../layers/layer.js';
import type { LayerNormFields } from '../layers/layernorm.js';
import type { LinearFields } from '../layers/linear.js';
import type { PoolFields } from '../layers/pool2d.js';
import type { Network } from '../model/network.js';

/** The subset of the TF.js API the interpreter uses. */
export interface TfTensor {
  dispose(): void;
  data(): Promise<Float32Array>;
  shape: number[];
}
type Pad = [[number, number], [number, number], [number, number], [number, number]];
export interface TfOps {
  tensor(values: Float32Array, shape: number[]): TfTensor;
  matMul(a: TfTensor, b: TfTensor, transposeA?: boolean, transposeB?: boolean): TfTensor;
  add(a: TfTensor, b: TfTensor): TfTensor;
  sub(a: TfTensor, b: TfTensor): TfTensor;
  mul(a: TfTensor, b: TfTensor): TfTensor;
  div(a: TfTensor, b: TfTensor): TfTensor;
  sqrt(a: TfTensor): TfTensor;
  scalar(v: number): TfTensor;
  mean(a: TfTensor, axis: number[], keepDims: boolean): TfTensor;
  reshape(a: TfTensor, shape: number[]): TfTensor;
  transpose(a: TfTensor, perm: number[]): TfTensor;
  relu(a: TfTensor): TfTensor;
  tanh(a: TfTensor): TfTensor;
  sigmoid(a: TfTensor): TfTensor;
  erf(a: TfTensor): TfTensor;
  conv2d(x: TfTensor, filter: TfTensor, strides: [number, number], pad: Pad, dataFormat: 'NHWC', dilations: [number, number]): TfTensor;
  maxPool(x: TfTensor, size: [number, number], strides: [number, number], pad: 'valid'): TfTensor;
  avgPool(x: TfTensor, size: [number, number], strides: [number, number], pad: 'valid'): TfTensor;
}

/** Why TF.js cannot run this network as the spec defines it, or undefined. */
const INTERPRETED = new Set(['linear', 'conv2d', 'maxpool2d', 'avgpool2d', 'flatten', 'layernorm', 'residual', 'relu', 'tanh', 'sigmoid', 'gelu', 'identity']);

export function tfUnsupported(model: Network): string | undefined {
  const walk = (nodes: readonly LayerNode[]): string | undefined => {
    for (const node of nodes) {
      if (!INTERPRETED.has(node.type)) return `layer type ${node.type} is not in the TF.js interpreter`;
      if (node.type === 'conv2d') {
        const f = node.fields as Conv2dFields;
        if (f.groups !== 1) return `${node.name}: TF.js has no grouped conv2d`;
        if ((f.dilation[0] > 1 || f.dilation[1] > 1) && (f.stride[0] > 1 || f.stride[1] > 1)) return `${node.name}: TF.js refuses dilation with a stride`;
      }
      if ((node.type === 'maxpool2d' || node.type === 'avgpool2d') && (node.fields as PoolFields).padding.some((p) => p > 0)) {
        return `${node.type} with padding: TF.js pads pools its own way`;
      }
      const inner = walk(node.children);
      if (inner) return inner;
    }
    return undefined;
  };
  return walk(model.layers);
}

/** Channels-first x through a channels-last TF.js op. */
function channelsLast(tf: TfOps, x: TfTensor, op: (nhwc: TfTensor) => TfTensor): TfTensor {
  return tf.transpose(op(tf.transpose(x, [0, 2, 3, 1])), [0, 3, 1, 2]);
}

/**
 * The logits [batch, out] of `x` [batch, …input] through the layers, with
 * `param(name)` the tensor of each parameter in PyTorch's layout.
 */
export function tfForward(tf: TfOps, nodes: readonly LayerNode[], x: TfTensor, param: (name: string) => TfTensor): TfTensor {
  let a = x;
  for (const node of nodes) {
    const has = (role: string) => node.parameters.some((p) => p.role === role);
    switch (node.type) {
      case 'linear': {
        const f = node.fields as LinearFields;
        const lead = a.shape.slice(0, -1);
        let z = tf.matMul(tf.reshape(a, [-1, f.in]), param(`${node.name}.weight`), false, true);
        if (f.bias) z = tf.add(z, param(`${node.name}.bias`));
        a = tf.reshape(z, [...lead, f.out]);
        break;
      }
      case 'conv2d': {
        const f = node.fields as Conv2dFields;
        const filter = tf.transpose(param(`${node.name}.weight`), [2, 3, 1, 0]); // [out, in, kh, kw] → [kh, kw, in, out]
        const pad: Pad = [[0, 0], [f.padding[0], f.padding[0]], [f.padding[1], f.padding[1]], [0, 0]];
        a = channelsLast(tf, a, (v) => tf.conv2d(v, filter, f.stride, pad, 'NHWC', f.dilation));
        if (f.bias) a = tf.add(a, tf.reshape(param(`${node.name}.bias`), [f.out_channels, 1, 1]));
        break;
      }
      case 'maxpool2d':
      case 'avgpool2d': {
        const f = node.fields as PoolFields;
        const pool = node.type === 'maxpool2d' ? tf.maxPool : tf.avgPool;
        a = channelsLast(tf, a, (v) => pool.call(tf, v, f.kernel_size, f.stride, 'valid'));
        break;
      }
      case 'flatten':
        a = tf.reshape(a, [a.shape[0]!, -1]);
        break;
      case 'layernorm': {
        const f = node.fields as LayerNormFields;
        const axes = f.normalized_shape.map((_, k) => a.shape.length - f.normalized_shape.length + k);
        const centred = tf.sub(a, tf.mean(a, axes, true));
        const variance = tf.mean(tf.mul(centred, centred), axes, true);
        a = tf.div(centred, tf.sqrt(tf.add(variance, tf.scalar(f.eps))));
        if (has('weight')) a = tf.add(tf.mul(a, param(`${node.name}.weight`)), param(`${node.name}.bias`));
        break;
      }
      case 'residual':
        a = tf.add(a, tfForward(tf, node.children, a, param));
        break;
      case 'relu':
        a = tf.relu(a);
        break;
      case 'tanh':
        a = tf.tanh(a);
        break;
      case 'sigmoid':
        a = tf.sigmoid(a);
        break;
      case 'gelu': // the erf form, as the spec's gelu
        a = tf.mul(tf.mul(a, tf.scalar(0.5)), tf.add(tf.scalar(1), tf.erf(tf.mul(a, tf.scalar(Math.SQRT1_2)))));
        break;
      case 'identity':
        break;
      default:
        throw new Error(`layer type ${node.type} is not in the TF.js interpreter`);
    }
  }
  return a;
}
