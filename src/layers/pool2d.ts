/**
 * maxpool2d and avgpool2d: PyTorch's MaxPool2d and AvgPool2d on inputs
 * [C, H, W], channel by channel, with ceil_mode false (dilation 1). Max
 * pooling pads with −∞ and sends the gradient to the first largest element
 * of each window (row-major order, as PyTorch); average pooling counts the
 * padding in its divisor (count_include_pad), so every window divides by
 * kh·kw. No parameters.
 *
 *   OH = ⌊(H + 2p_h − kh) / s_h⌋ + 1, likewise OW; window (oy, ox) covers
 *   rows oy·s_h − p_h … oy·s_h − p_h + kh − 1
 */
import type { Step } from '../gpu/device.js';
import type { PoolGeometry, PoolMode } from '../kernels/pool2d.js';
import { InputError } from './errors.js';
import { expectRank, pairField, pairJson } from './fields.js';
import type { BackwardIO, ForwardIO, GpuEnv, LayerNode, LayerType } from './layer.js';
import { StatelessOp } from './layer.js';

export interface PoolFields {
  kernel_size: [number, number];
  stride: [number, number];
  padding: [number, number];
}

type Node = LayerNode<PoolFields>;

function geometry(node: Node): PoolGeometry {
  const f = node.fields;
  return { c: node.input[0]!, h: node.input[1]!, w: node.input[2]!, oh: node.output[1]!, ow: node.output[2]!, kernel: f.kernel_size, stride: f.stride, padding: f.padding };
}

class PoolOp extends StatelessOp {
  readonly #geometry: PoolGeometry;
  #arg: GPUBuffer | undefined;

  constructor(
    node: Node,
    readonly env: GpuEnv,
    readonly mode: PoolMode,
  ) {
    super(node);
    this.#geometry = geometry(node);
  }

  /** Max pooling keeps each output's winner. */
  override floatsPerSample(): number {
    const g = this.#geometry;
    return this.mode === 'max' ? g.c * g.oh * g.ow : 0;
  }

  override async allocate(capacity: number): Promise<void> {
    this.release();
    if (this.mode === 'max') this.#arg = await this.env.gpu.storage(capacity * this.floatsPerSample() * 4, `${this.node.type} winners`);
  }

  override release(): void {
    if (this.#arg) this.env.gpu.buffers.release(this.#arg);
    this.#arg = undefined;
  }

  forward(step: Step, io: ForwardIO): void {
    this.env.kernels.pool2d.forward(step, this.mode, this.#geometry, { n: io.n, x: io.x, y: io.y, ...(this.#arg ? { arg: this.#arg } : {}) });
  }

  backward(step: Step, io: BackwardIO): void {
    if (!io.dx) return;
    this.env.kernels.pool2d.backward(step, this.mode, this.#geometry, { n: io.n, dy: io.dy, dx: io.dx, ...(this.#arg ? { arg: this.#arg } : {}) });
  }
}

function poolType(mode: PoolMode): LayerType<PoolFields> {
  const type = `${mode}pool2d`;
  return {
    type,
    keys: ['kernel_size', 'stride', 'padding'],
    parse(raw, ctx) {
      const where = ctx.where;
      const kernel = pairField(raw, 'kernel_size', where);
      const f: PoolFields = {
        kernel_size: kernel,
        stride: raw['stride'] === undefined || raw['stride'] === null ? kernel : pairField(raw, 'stride', where),
        padding: pairField(raw, 'padding', where, { min: 0, default: 0 }),
      };
      expectRank(ctx.input, 3, where, type);
      const [c, h, w] = ctx.input as [number, number, number];
      const out = [h, w].map((size, a) => {
        const k = f.kernel_size[a]!;
        const p = f.padding[a]!;
        // PyTorch's rule: a window must hold at least one real element.
        if (2 * p > k) throw new InputError(`${where}: padding ${p} is more than half the kernel size ${k}`);
        if (size + 2 * p < k) throw new InputError(`${where}: the kernel spans ${k} ${a === 0 ? 'rows' : 'columns'} but the padded input has ${size + 2 * p} (${size} + 2·${p})`);
        return Math.floor((size + 2 * p - k) / f.stride[a]!) + 1;
      });
      return { fields: f, output: [c, out[0]!, out[1]!] };
    },
    toJson(node) {
      const f = node.fields;
      return { type, kernel_size: pairJson(f.kernel_size), stride: pairJson(f.stride), padding: pairJson(f.padding) };
    },
    cpu: {
      forward(node, _w, x) {
        const g = geometry(node);
        const y = new Float64Array(g.c * g.oh * g.ow);
        const arg = new Int32Array(y.length).fill(-1);
        eachWindow(g, (out, input) => {
          if (mode === 'avg') y[out]! += x[input]! / (g.kernel[0] * g.kernel[1]);
          else if (arg[out]! < 0 || x[input]! > y[out]!) {
            y[out] = x[input]!;
            arg[out] = input;
          }
        });
        return { y, saved: arg };
      },
      backward(node, _w, { x, dy, saved }, _g, wantDx) {
        if (!wantDx) return undefined;
        const g = geometry(node);
        const dx = new Float64Array(x.length);
        if (mode === 'max') (saved as Int32Array).forEach((input, out) => (dx[input]! += dy[out]!));
        else eachWindow(g, (out, input) => (dx[input]! += dy[out]! / (g.kernel[0] * g.kernel[1])));
        return dx;
      },
    },
    gpu: (node, env) => new PoolOp(node, env, mode),
  };
}

/** Calls `visit(out, in)` for every output element and every real input element of its window, in row-major order. */
function eachWindow(g: PoolGeometry, visit: (out: number, input: number) => void): void {
  for (let c = 0; c < g.c; c++) {
    for (let oy = 0; oy < g.oh; oy++) {
      for (let ox = 0; ox < g.ow; ox++) {
        const out = (c * g.oh + oy) * g.ow + ox;
        for (let ky = 0; ky < g.kernel[0]; ky++) {
          const iy = oy * g.stride[0] - g.padding[0] + ky;
          if (iy < 0 || iy >= g.h) continue;
          for (let kx = 0; kx < g.kernel[1]; kx++) {
            const ix = ox * g.stride[1] - g.padding[1] + kx;
            if (ix >= 0 && ix < g.w) visit(out, (c * g.h + iy) * g.w + ix);
          }
        }
      }
    }
  }
}

export const maxpool2d = poolType('max');
export const avgpool2d = poolType('avg');
