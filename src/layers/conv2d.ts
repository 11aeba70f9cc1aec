/**
 * conv2d: PyTorch's nn.Conv2d (cross-correlation, zero padding, stride,
 * dilation, groups, bias) on inputs [C_in, H, W]. Its weight acts at every
 * output pixel t = (oy, ox): with ā_t the im2col patch (C_in/groups · kh · kw
 * values in [c, ky, kx] order) the per-sample gradient is G = Σ_t δ_t ā_tᵀ
 * (DESIGN.md §1).
 *
 *   W [C_out, C_in/groups, kh, kw], b [C_out]
 *   y[o, oy, ox] = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · x[g·CG + c, oy·s_h − p_h + ky·d_h, ox·s_w − p_w + kx·d_w]
 *   (g = o's group, CG = C_in / groups; x outside the image is 0)
 *   OH = ⌊(H + 2p_h − d_h(kh − 1) − 1) / s_h⌋ + 1, likewise OW
 *
 * On a GPU a convolution with groups = 1 runs on the blocked matrix
 * products as implicit im2col (matmul.wgsl's conv_* entries: the patch is
 * read in place, never stored): forward with the activation fused, and the
 * input gradient. On a CPU-SIMD driver (GpuEnv.convolutions), and for
 * grouped convolutions, the direct kernels of conv2d.wgsl run them, in
 * blocks of channels by pixels; per-sample gradients always run there.
 */
import type { Step } from '../gpu/device.js';
import type { ConvGeometry } from '../kernels/conv2d.js';
import type { LayerOffsets } from '../kernels/matmul.js';
import { InputError } from './errors.js';
import { boolField, expectRank, intField, pairField, pairJson } from './fields.js';
import type { BackwardIO, ForwardIO, GpuEnv, GradientRows, KroneckerGeometry, KroneckerOp, LayerNode, LayerType, ParameterLeaf, ParameterOp } from './layer.js';

export interface Conv2dFields {
  in_channels: number;
  out_channels: number;
  kernel_size: [number, number];
  stride: [number, number];
  padding: [number, number];
  dilation: [number, number];
  groups: number;
  bias: boolean;
}

type Node = LayerNode<Conv2dFields>;

function geometry(node: Node): ConvGeometry {
  const f = node.fields;
  return {
    cIn: f.in_channels,
    h: node.input[1]!,
    w: node.input[2]!,
    cOut: f.out_channels,
    oh: node.output[1]!,
    ow: node.output[2]!,
    kernel: f.kernel_size,
    stride: f.stride,
    padding: f.padding,
    dilation: f.dilation,
    groups: f.groups,
    bias: f.bias,
  };
}

/** K-FAC's view (DESIGN.md §1): one group only; grouped convolutions carry their exact diagonal. */
function kroneckerGeometry(node: Node): KroneckerGeometry | undefined {
  const f = node.fields;
  if (f.groups !== 1) return undefined;
  return { positions: node.output[1]! * node.output[2]!, inputs: f.in_channels * f.kernel_size[0] * f.kernel_size[1], outputs: f.out_channels, bias: f.bias };
}

/** The patch ā_t of one sample [C, H, W] at every output pixel t: [OH·OW, C·kh·kw], 0 outside the image. */
function patches(node: Node, x: Float64Array): Float64Array {
  const f = node.fields;
  const [c, h, w] = node.input as [number, number, number];
  const [oh, ow] = [node.output[1]!, node.output[2]!];
  const [kh, kw] = f.kernel_size;
  const taps = c * kh * kw;
  const out = new Float64Array(oh * ow * taps);
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      const row = (oy * ow + ox) * taps;
      for (let ci = 0; ci < c; ci++) {
        for (let ky = 0; ky < kh; ky++) {
          const iy = oy * f.stride[0] - f.padding[0] + ky * f.dilation[0];
          for (let kx = 0; kx < kw; kx++) {
            const ix = ox * f.stride[1] - f.padding[1] + kx * f.dilation[1];
            if (iy >= 0 && iy < h && ix >= 0 && ix < w) out[row + (ci * kh + ky) * kw + kx] = x[(ci * h + iy) * w + ix]!;
          }
        }
      }
    }
  }
  return out;
}

/** dy [C_out, OH·OW] as rows per output pixel: [OH·OW, C_out]. */
function pixelRows(node: Node, dy: Float64Array): Float64Array {
  const co = node.fields.out_channels;
  const t = dy.length / co;
  const out = new Float64Array(dy.length);
  for (let o = 0; o < co; o++) for (let p = 0; p < t; p++) out[p * co + o] = dy[o * t + p]!;
  return out;
}

class Conv2dOp implements ParameterOp {
  readonly fusesOutputActivation = true;
  readonly fusesInputActivation = true;
  readonly offset: number;
  readonly size: number;
  readonly #geometry: ConvGeometry;
  /** One group, on an adapter that wants them: the blocked products, as implicit im2col. */
  readonly #products: boolean;
  readonly #layer: LayerOffsets;

  constructor(
    readonly node: Node,
    readonly env: GpuEnv,
  ) {
    this.offset = env.offset(node);
    this.size = node.parameters.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
    const g = (this.#geometry = geometry(node));
    this.#products = g.groups === 1 && env.convolutions === 'products';
    const weights = g.cOut * (g.cIn / g.groups) * g.kernel[0] * g.kernel[1];
    this.#layer = { weightOffset: this.offset, biasOffset: g.bias ? this.offset + weights : undefined };
    const k = env.kernels;
    this.kronecker = kroneckerGeometry(node)
      ? {
          rowsInPlace: false,
          inputRows: (step, io, out) => k.conv2d.im2col(step, g, { n: io.n, x: io.x, out }),
          gradientRows: (step, io, out) => k.elementwise.transpose(step, { x: io.dy, y: out.buffer, batch: io.n, rows: g.cOut, cols: g.oh * g.ow, offset: out.at }),
        }
      : undefined;
  }

  floatsPerSample(): number {
    return 0;
  }
  async allocate(): Promise<void> {}
  release(): void {}

  forward(step: Step, io: ForwardIO): void {
    const k = this.env.kernels;
    if (this.#products) {
      k.matmul.convForward(step, this.#geometry, {
        x: io.x,
        theta: this.env.theta,
        layer: this.#layer,
        ...(io.act?.z ? { z: io.act.z } : {}),
        scratch: k.scratch,
        y: io.y,
        batch: io.n,
        activation: io.act?.code ?? 0,
      });
      return;
    }
    k.conv2d.forward(step, this.#geometry, {
      n: io.n,
      x: io.x,
      theta: this.env.theta,
      wOffset: this.offset,
      y: io.y,
      ...(io.act?.z ? { z: io.act.z } : {}),
      scratch: this.env.kernels.scratch,
      activation: io.act?.code ?? 0,
    });
  }

  backward(step: Step, io: BackwardIO): void {
    if (!io.dx) return;
    if (this.#products) {
      // Without an activation z is never read; dy stands in for the binding.
      const act = { zBelow: io.inputAct?.z ?? io.dy, activation: io.inputAct?.code ?? 0 };
      this.env.kernels.matmul.convInputGradient(step, this.#geometry, { delta: io.dy, theta: this.env.theta, layer: this.#layer, dx: io.dx, batch: io.n, ...act });
      return;
    }
    this.env.kernels.conv2d.inputGradient(step, this.#geometry, {
      n: io.n,
      dy: io.dy,
      theta: this.env.theta,
      wOffset: this.offset,
      dx: io.dx,
      ...(io.inputAct ? { inputAct: io.inputAct } : {}),
    });
  }

  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[] {
    return [{ op: this, x, dy }];
  }

  perSampleGradient(step: Step, io: { n: number; x: GPUBuffer; dy: GPUBuffer }, rows: GradientRows): void {
    // The direct kernel in blocks of channels by taps, also for one group: on lavapipe a batched
    // implicit product (one per sample, C_out rows) was slower even than the kernel's earlier form
    // (one invocation per parameter: cnn 1.47 s against 0.88 s a batch of 240), and patches written
    // once by an im2col pass slower still (lavapipe's memory bandwidth is a few GB/s).
    this.env.kernels.conv2d.perSampleGradient(step, this.#geometry, { n: io.n, x: io.x, dy: io.dy, g: rows.g, ldg: rows.ldg, offset: rows.offset });
  }

  canReduce(): boolean {
    return false;
  }

  /** Patches by an im2col pass; δ from channel-major [n, C_out, T] to rows [n·T, C_out]. One group only. */
  readonly kronecker: KroneckerOp | undefined;

  reduce(): void {
    throw new Error(`${this.node.name}: no direct reduction; use per-sample rows`);
  }
}

/** The output size of one spatial dimension, or an error naming the sizes at fault. */
export function convolvedSize(size: number, kernel: number, stride: number, padding: number, dilation: number, where: string, axis: string): number {
  const span = dilation * (kernel - 1) + 1;
  if (size + 2 * padding < span) {
    throw new InputError(`${where}: the kernel spans ${span} ${axis} (kernel ${kernel}, dilation ${dilation}) but the padded input has ${size + 2 * padding} (${size} + 2·${padding})`);
  }
  return Math.floor((size + 2 * padding - span) / stride) + 1;
}

export const conv2d: LayerType<Conv2dFields> = {
  type: 'conv2d',
  keys: ['name', 'in_channels', 'out_channels', 'kernel_size', 'stride', 'padding', 'dilation', 'groups', 'bias'],
  parse(raw, ctx) {
    const name = ctx.name(raw['name'], 'conv');
    const where = `${ctx.where} ("${name}")`;
    const f: Conv2dFields = {
      in_channels: intField(raw, 'in_channels', where),
      out_channels: intField(raw, 'out_channels', where),
      kernel_size: pairField(raw, 'kernel_size', where),
      stride: pairField(raw, 'stride', where, { default: 1 }),
      padding: pairField(raw, 'padding', where, { min: 0, default: 0 }),
      dilation: pairField(raw, 'dilation', where, { default: 1 }),
      groups: intField(raw, 'groups', where, { default: 1 }),
      bias: boolField(raw, 'bias', where, true),
    };
    expectRank(ctx.input, 3, where, 'conv2d');
    const [c, h, w] = ctx.input as [number, number, number];
    if (c !== f.in_channels) throw new InputError(`${where}: in_channels = ${f.in_channels} but its input has ${c} channels ([${ctx.input.join(', ')}])`);
    if (f.in_channels % f.groups !== 0 || f.out_channels % f.groups !== 0) {
      throw new InputError(`${where}: groups = ${f.groups} must divide in_channels = ${f.in_channels} and out_channels = ${f.out_channels}`);
    }
    const oh = convolvedSize(h, f.kernel_size[0], f.stride[0], f.padding[0], f.dilation[0], where, 'rows');
    const ow = convolvedSize(w, f.kernel_size[1], f.stride[1], f.padding[1], f.dilation[1], where, 'columns');
    const fanIn = (f.in_channels / f.groups) * f.kernel_size[0] * f.kernel_size[1];
    const bound = 1 / Math.sqrt(fanIn);
    return {
      name,
      fields: f,
      output: [f.out_channels, oh, ow],
      parameters: [
        { role: 'weight', shape: [f.out_channels, f.in_channels / f.groups, ...f.kernel_size], init: { uniform: bound } },
        ...(f.bias ? [{ role: 'bias' as const, shape: [f.out_channels], init: { uniform: bound } }] : []),
      ],
    };
  },
  toJson(node) {
    const f = node.fields;
    return {
      type: 'conv2d',
      name: node.name,
      in_channels: f.in_channels,
      out_channels: f.out_channels,
      kernel_size: pairJson(f.kernel_size),
      stride: pairJson(f.stride),
      padding: pairJson(f.padding),
      dilation: pairJson(f.dilation),
      groups: f.groups,
      bias: f.bias,
    };
  },
  cpu: {
    forward(node, [w, b], x) {
      const g = geometry(node);
      const y = new Float64Array(g.cOut * g.oh * g.ow);
      eachTap(g, (o, oy, ox, wi, xi) => {
        if (xi >= 0) y[(o * g.oh + oy) * g.ow + ox]! += w![wi]! * x[xi]!;
      });
      if (b) for (let o = 0; o < g.cOut; o++) for (let t = 0; t < g.oh * g.ow; t++) y[o * g.oh * g.ow + t]! += b[o]!;
      return { y };
    },
    backward(node, [w], { x, dy }, [gw, gb], wantDx) {
      const g = geometry(node);
      gw!.fill(0);
      const dx = wantDx ? new Float64Array(x.length) : undefined;
      eachTap(g, (o, oy, ox, wi, xi) => {
        if (xi < 0) return;
        const d = dy[(o * g.oh + oy) * g.ow + ox]!;
        gw![wi]! += d * x[xi]!;
        if (dx) dx[xi]! += d * w![wi]!;
      });
      if (gb) {
        gb.fill(0);
        for (let o = 0; o < g.cOut; o++) for (let t = 0; t < g.oh * g.ow; t++) gb[o]! += dy[o * g.oh * g.ow + t]!;
      }
      return dx;
    },
  },
  gpu: (node, env) => new Conv2dOp(node, env),
  kronecker: { geometry: kroneckerGeometry, inputs: patches, outputGradients: pixelRows },
};

/**
 * Calls `tap` for every (output o, oy, ox) × (weight element) pair of the
 * convolution: with wi the weight's flat index and xi the input's flat index,
 * or −1 where the tap reads padding.
 */
function eachTap(g: ConvGeometry, tap: (o: number, oy: number, ox: number, wi: number, xi: number) => void): void {
  const cg = g.cIn / g.groups;
  const og = g.cOut / g.groups;
  const [kh, kw] = g.kernel;
  for (let o = 0; o < g.cOut; o++) {
    const c0 = Math.floor(o / og) * cg;
    for (let oy = 0; oy < g.oh; oy++) {
      for (let ox = 0; ox < g.ow; ox++) {
        for (let c = 0; c < cg; c++) {
          for (let ky = 0; ky < kh; ky++) {
            const iy = oy * g.stride[0] - g.padding[0] + ky * g.dilation[0];
            for (let kx = 0; kx < kw; kx++) {
              const ix = ox * g.stride[1] - g.padding[1] + kx * g.dilation[1];
              const inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;
              tap(o, oy, ox, ((o * cg + c) * kh + ky) * kw + kx, inside ? ((c0 + c) * g.h + iy) * g.w + ix : -1);
            }
          }
        }
      }
    }
  }
}
