/**
 * layernorm: PyTorch's nn.LayerNorm over the trailing dimensions
 * `normalized_shape` (D values), at every position t of the leading ones
 * (T = input size / D). With elementwise_affine, γ and β [normalized_shape]
 * act at every position (shared parameters, DESIGN.md §1).
 *
 *   μ, σ² over the D values (biased), r = 1/√(σ² + eps), x̂ = (x − μ)·r, y = γ ⊙ x̂ + β
 *   g_γ = Σ_t dy_t ⊙ x̂_t,  g_β = Σ_t dy_t
 *   e = dy ⊙ γ,  dx = r·(e − mean(e) − x̂ ⊙ mean(e ⊙ x̂))
 */
import type { Step } from '../gpu/device.js';
import type { NormGeometry } from '../kernels/layernorm.js';
import { InputError } from './errors.js';
import { boolField, numberField } from './fields.js';
import type { BackwardIO, ForwardIO, GpuEnv, GradientRows, LayerNode, LayerType, ParameterLeaf, ParameterOp } from './layer.js';
import { sizeOf } from './layer.js';

export interface LayerNormFields {
  normalized_shape: number[];
  eps: number;
  elementwise_affine: boolean;
}

type Node = LayerNode<LayerNormFields>;

function geometry(node: Node): NormGeometry {
  const d = sizeOf(node.fields.normalized_shape);
  return { positions: sizeOf(node.input) / d, d, eps: node.fields.eps, affine: node.fields.elementwise_affine };
}

class LayerNormOp implements ParameterOp {
  readonly fusesOutputActivation = false;
  readonly fusesInputActivation = false;
  readonly offset: number;
  readonly size: number;
  readonly #geometry: NormGeometry;
  #saved: { xhat: GPUBuffer; rstd: GPUBuffer } | undefined;

  constructor(
    readonly node: Node,
    readonly env: GpuEnv,
  ) {
    this.#geometry = geometry(node);
    this.offset = node.fields.elementwise_affine ? env.offset(node) : 0;
    this.size = node.fields.elementwise_affine ? 2 * this.#geometry.d : 0;
  }

  /** x̂ and 1/σ are saved for the backward pass. */
  floatsPerSample(): number {
    const g = this.#geometry;
    return g.positions * (g.d + 1);
  }

  async allocate(capacity: number): Promise<void> {
    this.release();
    const g = this.#geometry;
    this.#saved = {
      xhat: await this.env.gpu.storage(capacity * g.positions * g.d * 4, `${this.node.name}.xhat`),
      rstd: await this.env.gpu.storage(capacity * g.positions * 4, `${this.node.name}.rstd`),
    };
  }

  release(): void {
    if (!this.#saved) return;
    this.env.gpu.buffers.release(this.#saved.xhat);
    this.env.gpu.buffers.release(this.#saved.rstd);
    this.#saved = undefined;
  }

  get #buffers(): { xhat: GPUBuffer; rstd: GPUBuffer } {
    if (!this.#saved) throw new Error(`${this.node.name}: encoded before allocate()`);
    return this.#saved;
  }

  forward(step: Step, io: ForwardIO): void {
    this.env.kernels.layernorm.forward(step, this.#geometry, { n: io.n, x: io.x, theta: this.env.theta, wOffset: this.offset, y: io.y, ...this.#buffers });
  }

  backward(step: Step, io: BackwardIO): void {
    if (!io.dx) return;
    this.env.kernels.layernorm.backward(step, this.#geometry, { n: io.n, dy: io.dy, theta: this.env.theta, wOffset: this.offset, dx: io.dx, ...this.#buffers });
  }

  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[] {
    return this.size > 0 ? [{ op: this, x, dy }] : [];
  }

  perSampleGradient(step: Step, io: { n: number; dy: GPUBuffer }, rows: GradientRows): void {
    this.env.kernels.layernorm.perSampleGradient(step, this.#geometry, { n: io.n, dy: io.dy, xhat: this.#buffers.xhat, ...rows });
  }

  canReduce(): boolean {
    return false;
  }

  reduce(): void {
    throw new Error(`${this.node.name}: no direct reduction; use per-sample rows`);
  }
}

export const layernorm: LayerType<LayerNormFields> = {
  type: 'layernorm',
  keys: ['name', 'normalized_shape', 'eps', 'elementwise_affine'],
  parse(raw, ctx) {
    const affine = boolField(raw, 'elementwise_affine', ctx.where, true);
    const name = affine ? ctx.name(raw['name'], 'norm') : undefined;
    const where = name ? `${ctx.where} ("${name}")` : ctx.where;
    const shapeRaw = raw['normalized_shape'];
    const shape = typeof shapeRaw === 'number' ? [shapeRaw] : shapeRaw;
    if (!Array.isArray(shape) || shape.length === 0 || !shape.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 1)) {
      throw new InputError(`${where}: "normalized_shape" must be a positive integer or a list of them, got ${JSON.stringify(shapeRaw)}`);
    }
    const trailing = ctx.input.slice(ctx.input.length - shape.length);
    if (shape.length > ctx.input.length || trailing.some((d, i) => d !== shape[i])) {
      throw new InputError(`${where}: normalized_shape [${shape.join(', ')}] is not the trailing shape of its input [${ctx.input.join(', ')}]`);
    }
    const fields: LayerNormFields = {
      normalized_shape: shape as number[],
      eps: numberField(raw, 'eps', where, 1e-5, (v) => v > 0, 'a positive number'),
      elementwise_affine: affine,
    };
    return {
      ...(name ? { name } : {}),
      fields,
      output: ctx.input,
      parameters: affine
        ? [
            { role: 'weight', shape: [...fields.normalized_shape], init: { constant: 1 } },
            { role: 'bias', shape: [...fields.normalized_shape], init: { constant: 0 } },
          ]
        : [],
    };
  },
  toJson(node) {
    const f = node.fields;
    const shape = f.normalized_shape.length === 1 ? f.normalized_shape[0] : f.normalized_shape;
    return { type: 'layernorm', ...(node.name ? { name: node.name } : {}), normalized_shape: shape, eps: f.eps, elementwise_affine: f.elementwise_affine };
  },
  cpu: {
    forward(node, [gamma, beta], x) {
      const { positions, d, eps } = geometry(node);
      const y = new Float64Array(x.length);
      const xhat = new Float64Array(x.length);
      const rstd = new Float64Array(positions);
      for (let t = 0; t < positions; t++) {
        const row = x.subarray(t * d, (t + 1) * d);
        const mean = row.reduce((a, b) => a + b, 0) / d;
        const variance = row.reduce((a, b) => a + (b - mean) ** 2, 0) / d;
        rstd[t] = 1 / Math.sqrt(variance + eps);
        for (let i = 0; i < d; i++) {
          const h = (row[i]! - mean) * rstd[t]!;
          xhat[t * d + i] = h;
          y[t * d + i] = gamma ? gamma[i]! * h + beta![i]! : h;
        }
      }
      return { y, saved: { xhat, rstd } };
    },
    backward(node, [gamma], { dy, saved }, [gGamma, gBeta], wantDx) {
      const { positions, d } = geometry(node);
      const { xhat, rstd } = saved as { xhat: Float64Array; rstd: Float64Array };
      if (gGamma && gBeta) {
        gGamma.fill(0);
        gBeta.fill(0);
        for (let k = 0; k < dy.length; k++) {
          gGamma[k % d]! += dy[k]! * xhat[k]!;
          gBeta[k % d]! += dy[k]!;
        }
      }
      if (!wantDx) return undefined;
      const dx = new Float64Array(dy.length);
      for (let t = 0; t < positions; t++) {
        let m1 = 0;
        let m2 = 0;
        for (let i = 0; i < d; i++) {
          const e = dy[t * d + i]! * (gamma ? gamma[i]! : 1);
          m1 += e / d;
          m2 += (e * xhat[t * d + i]!) / d;
        }
        for (let i = 0; i < d; i++) {
          const e = dy[t * d + i]! * (gamma ? gamma[i]! : 1);
          dx[t * d + i] = rstd[t]! * (e - m1 - xhat[t * d + i]! * m2);
        }
      }
      return dx;
    },
  },
  gpu: (node, env) => new LayerNormOp(node, env),
};
