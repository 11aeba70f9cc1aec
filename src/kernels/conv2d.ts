/**
 * shaders/conv2d.wgsl: 2-D convolution over a batch by direct summation:
 * forward (with a fused output activation), the gradient to the input (with
 * the input producer's activation derivative fused), per-sample parameter
 * gradients, and the patches K-FAC's input factor is built from. The geometry is one object, passed to every entry.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { u32Constant } from '../gpu/reflect.js';
import { ACTIVATION_WGSL } from './activation.js';
import { KernelFamily } from './family.js';
import entries from '../../shaders/conv2d.wgsl';

export const CONV2D_WGSL = `${ACTIVATION_WGSL}\n${entries}`;

/**
 * The blocked kernels' blocks (forward, input_gradient_unit_stride, per_sample_grad): at most
 * CB_M output channels of a group by CB_N pixels or PSG_N taps per invocation (the shader's
 * constants); the channels in use are the CHANNELS override.
 */
const CB_M = u32Constant(CONV2D_WGSL, 'CB_M');
const CB_N = u32Constant(CONV2D_WGSL, 'CB_N');
const PSG_N = u32Constant(CONV2D_WGSL, 'PSG_N');

/** A block's output channels: CB_M, or all of a group's where it has fewer. */
function blockChannels(groups: number, channels: number): number {
  return Math.min(CB_M, channels / groups);
}

/** Invocations of a blocked kernel per sample: `channels` in `groups`, by `columns` (pixels or taps) in blocks of `width`. */
function blocks(groups: number, channels: number, columns: number, width: number): number {
  return groups * Math.ceil(channels / groups / blockChannels(groups, channels)) * Math.ceil(columns / width);
}

/** One conv2d's sizes: input [cIn, h, w], output [cOut, oh, ow], per sample. */
export interface ConvGeometry {
  cIn: number;
  h: number;
  w: number;
  cOut: number;
  oh: number;
  ow: number;
  kernel: readonly [number, number];
  stride: readonly [number, number];
  padding: readonly [number, number];
  dilation: readonly [number, number];
  groups: number;
  bias: boolean;
}

function dims(c: ConvGeometry, n: number, wOffset: number, rows?: { ldg: number; offset: number }): Record<string, number> {
  return {
    n,
    c_in: c.cIn,
    h: c.h,
    w: c.w,
    c_out: c.cOut,
    oh: c.oh,
    ow: c.ow,
    kh: c.kernel[0],
    kw: c.kernel[1],
    stride_h: c.stride[0],
    stride_w: c.stride[1],
    pad_h: c.padding[0],
    pad_w: c.padding[1],
    dil_h: c.dilation[0],
    dil_w: c.dilation[1],
    groups: c.groups,
    has_bias: c.bias ? 1 : 0,
    w_offset: wOffset,
    ldg: rows?.ldg ?? 0,
    g_offset: rows?.offset ?? 0,
  };
}

export class Conv2d {
  readonly #family: KernelFamily;

  constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'conv2d', CONV2D_WGSL);
  }

  /** y = act(conv(x)) [n, cOut, oh, ow], z = conv(x) stored when given (else `scratch` fills the binding). */
  forward(step: Step, c: ConvGeometry, p: { n: number; x: GPUBuffer; theta: GPUBuffer; wOffset: number; y: GPUBuffer; z?: GPUBuffer; scratch: GPUBuffer; activation: number }): void {
    this.#family.dispatch1d(
      step,
      'forward',
      { ACTIVATION: p.activation, STORE_Z: p.z !== undefined, CHANNELS: blockChannels(c.groups, c.cOut) },
      // dy is not read forward; x stands in for its binding.
      { x: p.x, dy: p.x, theta: p.theta, z_out: p.z ?? p.scratch, y: p.y },
      dims(c, p.n, p.wOffset),
      p.n * blocks(c.groups, c.cOut, c.oh * c.ow, CB_N),
    );
  }

  /**
   * dx [n, cIn, h, w] from dy [n, cOut, oh, ow], times act'(zIn) of the input's producer when
   * given: in blocks at unit stride (dy convolved with the flipped kernel), else one invocation
   * per element of dx.
   */
  inputGradient(step: Step, c: ConvGeometry, p: { n: number; dy: GPUBuffer; theta: GPUBuffer; wOffset: number; dx: GPUBuffer; inputAct?: { code: number; z: GPUBuffer } }): void {
    const unit = c.stride[0] === 1 && c.stride[1] === 1;
    this.#family.dispatch1d(
      step,
      unit ? 'input_gradient_unit_stride' : 'input_gradient',
      { ACTIVATION: p.inputAct?.code ?? 0, ...(unit ? { CHANNELS: blockChannels(c.groups, c.cIn) } : {}) },
      // Without an activation z_in is never used, nor x here: dy stands in for those bindings.
      { dy: p.dy, ...(unit ? { x: p.dy } : {}), theta: p.theta, z_in: p.inputAct?.z ?? p.dy, y: p.dx },
      dims(c, p.n, p.wOffset),
      unit ? p.n * blocks(c.groups, c.cIn, c.h * c.w, CB_N) : p.n * c.cIn * c.h * c.w,
    );
  }

  /** The patches (groups = 1) [n·oh·ow, cIn·kh·kw] into `out`, 0 outside the image. */
  im2col(step: Step, c: ConvGeometry, p: { n: number; x: GPUBuffer; out: GPUBuffer }): void {
    if (c.groups !== 1) throw new Error('im2col is for convolutions of one group');
    this.#family.dispatch1d(step, 'im2col', {}, { x: p.x, g: p.out }, dims(c, p.n, 0), p.n * c.oh * c.ow);
  }

  /** g[offset + s·ldg + j]: the per-sample gradient of W then b (PyTorch order). */
  perSampleGradient(step: Step, c: ConvGeometry, p: { n: number; x: GPUBuffer; dy: GPUBuffer; g: GPUBuffer; ldg: number; offset: number }): void {
    // Blocks of output channels (within a group) by taps, the bias one more tap.
    const taps = (c.cIn / c.groups) * c.kernel[0] * c.kernel[1] + (c.bias ? 1 : 0);
    this.#family.dispatch1d(
      step,
      'per_sample_grad',
      { CHANNELS: blockChannels(c.groups, c.cOut) },
      { x: p.x, dy: p.dy, g: p.g },
      dims(c, p.n, 0, p),
      p.n * blocks(c.groups, c.cOut, taps, PSG_N),
    );
  }
}
