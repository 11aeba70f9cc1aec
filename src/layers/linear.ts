/**
 * linear: y = x Wᵀ + b on the last dimension, PyTorch's nn.Linear. On an
 * input [T, in] the same W and b act at every one of the T leading positions
 * (shared parameters, DESIGN.md §1): the per-sample gradient sums over them.
 *
 *   W [out, in], b [out];  y[t, o] = b[o] + Σ_i W[o, i] x[t, i]
 *   g_W[o, i] = Σ_t dy[t, o] x[t, i],  g_b[o] = Σ_t dy[t, o],  dx[t, i] = Σ_o W[o, i] dy[t, o]
 *
 * On the GPU a batch is one matrix of n·T rows (matmul.wgsl): forward and
 * backward fuse the activations around the layer, the batch gradient is one
 * product, and with T = 1 the diagonal is the squared-gradient product
 * Σ_s (δ_s²)(ā_s²)ᵀ, per-sample gradients never formed.
 */
import { InputError } from './errors.js';
import { boolField, intField } from './fields.js';
import type { BackwardIO, ForwardIO, GpuEnv, GradientRows, KroneckerGeometry, KroneckerOp, LayerNode, LayerType, ParameterLeaf, ParameterOp } from './layer.js';
import { sizeOf } from './layer.js';
import type { Step } from '../gpu/device.js';

export interface LinearFields {
  in: number;
  out: number;
  bias: boolean;
}

type Node = LayerNode<LinearFields>;

/** T: the positions that share the layer's parameters. */
function positions(node: Node): number {
  return sizeOf(node.input) / node.fields.in;
}

/** K-FAC's view (DESIGN.md §1): the input and output rows at each of the T positions. */
function kroneckerGeometry(node: Node): KroneckerGeometry {
  const f = node.fields;
  return { positions: positions(node), inputs: f.in, outputs: f.out, bias: f.bias };
}

class LinearOp implements ParameterOp {
  readonly fusesOutputActivation = true;
  readonly fusesInputActivation = true;
  readonly offset: number;
  readonly size: number;
  /** A batch is n·T rows already: the input is ā's rows and the output gradient δ's; a copy puts them where asked. */
  readonly kronecker: KroneckerOp = {
    rowsInPlace: true,
    inputRows: (step, io, out) => {
      const rows = io.n * positions(this.node);
      this.env.kernels.elementwise.transpose(step, { x: io.x, y: out, batch: rows, rows: 1, cols: this.node.fields.in, offset: 0 });
    },
    gradientRows: (step, io, out) => {
      const rows = io.n * positions(this.node);
      this.env.kernels.elementwise.transpose(step, { x: io.dy, y: out.buffer, batch: rows, rows: 1, cols: this.node.fields.out, offset: out.at });
    },
  };

  constructor(
    readonly node: Node,
    readonly env: GpuEnv,
  ) {
    this.offset = env.offset(node);
    const f = node.fields;
    this.size = f.out * (f.in + (f.bias ? 1 : 0));
  }

  get #layer(): { weightOffset: number; biasOffset: number | undefined } {
    const f = this.node.fields;
    return { weightOffset: this.offset, biasOffset: f.bias ? this.offset + f.out * f.in : undefined };
  }

  floatsPerSample(): number {
    return 0;
  }
  async allocate(): Promise<void> {}
  release(): void {}

  forward(step: Step, io: ForwardIO): void {
    const f = this.node.fields;
    this.env.kernels.matmul.forward(step, {
      x: io.x,
      theta: this.env.theta,
      layer: this.#layer,
      ...(io.act?.z ? { z: io.act.z } : { scratch: this.env.kernels.scratch }),
      y: io.y,
      batch: io.n * positions(this.node),
      inputs: f.in,
      outputs: f.out,
      activation: io.act?.code ?? 0,
    });
  }

  backward(step: Step, io: BackwardIO): void {
    if (!io.dx) return;
    const f = this.node.fields;
    this.env.kernels.matmul.backward(step, {
      delta: io.dy,
      theta: this.env.theta,
      layer: this.#layer,
      // Without an activation z is never used; dy stands in for the binding.
      zBelow: io.inputAct?.z ?? io.dy,
      deltaBelow: io.dx,
      batch: io.n * positions(this.node),
      inputs: f.in,
      outputs: f.out,
      activation: io.inputAct?.code ?? 0,
    });
  }

  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[] {
    return [{ op: this, x, dy }];
  }

  perSampleGradient(step: Step, io: { n: number; x: GPUBuffer; dy: GPUBuffer }, rows: GradientRows): void {
    const f = this.node.fields;
    this.env.kernels.perSample.encode(step, {
      delta: io.dy,
      a: io.x,
      g: rows.g,
      batch: io.n,
      positions: positions(this.node),
      inputs: f.in,
      outputs: f.out,
      bias: f.bias,
      ldg: rows.ldg,
      offset: rows.offset,
    });
  }

  /** Squares of sums over positions are not sums of squares: only T = 1 has a direct diagonal. */
  canReduce(kind: 'sum' | 'squared'): boolean {
    return kind === 'sum' || positions(this.node) === 1;
  }

  reduce(step: Step, io: { n: number; x: GPUBuffer; dy: GPUBuffer }, out: { buffer: GPUBuffer; at: number }, kind: 'sum' | 'squared', scale: number): void {
    if (!this.canReduce(kind)) throw new Error(`${this.node.name}: no direct squared reduction at ${positions(this.node)} positions`);
    const f = this.node.fields;
    const t = positions(this.node);
    const { weightOffset, biasOffset } = this.#layer;
    const layer = { weightOffset: out.at + weightOffset, biasOffset: biasOffset === undefined ? undefined : out.at + biasOffset };
    const p = { delta: io.dy, a: io.x, out: out.buffer, layer, batch: io.n * t, inputs: f.in, outputs: f.out };
    if (kind === 'sum') this.env.kernels.matmul.weightGradient(step, { ...p, scale });
    else this.env.kernels.matmul.squaredGradient(step, p);
  }
}

export const linear: LayerType<LinearFields> = {
  type: 'linear',
  keys: ['name', 'in', 'out', 'bias'],
  parse(raw, ctx) {
    const name = ctx.name(raw['name'], 'fc');
    const where = `${ctx.where} ("${name}")`;
    const fields = { in: intField(raw, 'in', where), out: intField(raw, 'out', where), bias: boolField(raw, 'bias', where, true) };
    const last = ctx.input[ctx.input.length - 1];
    if (last !== fields.in) {
      throw new InputError(`${where}: linear takes in = ${fields.in} on its input's last dimension, but its input has shape [${ctx.input.join(', ')}]`);
    }
    const bound = 1 / Math.sqrt(fields.in);
    return {
      name,
      fields,
      output: [...ctx.input.slice(0, -1), fields.out],
      parameters: [
        { role: 'weight', shape: [fields.out, fields.in], init: { uniform: bound } },
        ...(fields.bias ? [{ role: 'bias' as const, shape: [fields.out], init: { uniform: bound } }] : []),
      ],
    };
  },
  toJson(node) {
    const f = node.fields;
    return { type: 'linear', name: node.name, in: f.in, out: f.out, ...(f.bias ? {} : { bias: false }) };
  },
  cpu: {
    forward(node, [w, b], x) {
      const { in: ni, out: no } = node.fields;
      const t = x.length / ni;
      const y = new Float64Array(t * no);
      for (let p = 0; p < t; p++) {
        for (let o = 0; o < no; o++) {
          let s = b ? b[o]! : 0;
          for (let i = 0; i < ni; i++) s += w![o * ni + i]! * x[p * ni + i]!;
          y[p * no + o] = s;
        }
      }
      return { y };
    },
    backward(node, [w], { x, dy }, [gw, gb], wantDx) {
      const { in: ni, out: no } = node.fields;
      const t = x.length / ni;
      gw!.fill(0);
      gb?.fill(0);
      for (let p = 0; p < t; p++) {
        for (let o = 0; o < no; o++) {
          const d = dy[p * no + o]!;
          for (let i = 0; i < ni; i++) gw![o * ni + i]! += d * x[p * ni + i]!;
          if (gb) gb[o]! += d;
        }
      }
      if (!wantDx) return undefined;
      const dx = new Float64Array(x.length);
      for (let p = 0; p < t; p++) {
        for (let i = 0; i < ni; i++) {
          let s = 0;
          for (let o = 0; o < no; o++) s += w![o * ni + i]! * dy[p * no + o]!;
          dx[p * ni + i] = s;
        }
      }
      return dx;
    },
  },
  gpu: (node, env) => new LinearOp(node, env),
  kronecker: {
    geometry: kroneckerGeometry,
    // x is [T, in] and dy [T, out] already.
    inputs: (_node, x) => x,
    outputGradients: (_node, dy) => dy,
  },
};

