/**
 * residual: y = x + f(x), f its nested layers, which must give back the
 * shape they take. The parameters are those of its layers, in order.
 *
 *   dx = dy + ∂f/∂xᵀ dy
 *
 * On the GPU the branch runs as one nested sequence op writing into y, then
 * x is added in place; backward runs the branch with dy, writing its dx, and
 * adds dy in place, multiplied by the input producer's activation
 * derivative when the planner fuses it here.
 */
import type { Step } from '../gpu/device.js';
import { InputError } from './errors.js';
import type { BackwardIO, ForwardIO, GpuEnv, GpuOp, LayerNode, LayerType, ParameterLeaf } from './layer.js';
import { sizeOf } from './layer.js';

class ResidualOp implements GpuOp {
  readonly fusesOutputActivation = false;
  readonly fusesInputActivation = true;
  readonly #branch: GpuOp;
  readonly #size: number;

  constructor(
    readonly node: LayerNode,
    readonly env: GpuEnv,
  ) {
    this.#branch = env.sequence(node.children, node.input);
    this.#size = sizeOf(node.input);
  }

  floatsPerSample(): number {
    return this.#branch.floatsPerSample();
  }
  allocate(capacity: number): Promise<void> {
    return this.#branch.allocate(capacity);
  }
  release(): void {
    this.#branch.release();
  }

  forward(step: Step, io: ForwardIO): void {
    this.#branch.forward(step, { n: io.n, x: io.x, y: io.y });
    this.env.kernels.elementwise.addInto(step, { x: io.x, y: io.y, count: io.n * this.#size });
  }

  backward(step: Step, io: BackwardIO): void {
    this.#branch.backward(step, { n: io.n, x: io.x, y: io.y, dy: io.dy, ...(io.dx ? { dx: io.dx } : {}) });
    if (io.dx) this.env.kernels.elementwise.addBackward(step, { dy: io.dy, dx: io.dx, count: io.n * this.#size, ...(io.inputAct ? { act: io.inputAct } : {}) });
  }

  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[] {
    return this.#branch.leaves(x, dy);
  }
}

export const residual: LayerType<Record<string, never>> = {
  type: 'residual',
  keys: ['layers'],
  parse(raw, ctx) {
    const children = ctx.layers(raw['layers'], `${ctx.where}.layers`, ctx.input);
    const out = children.length > 0 ? children[children.length - 1]!.output : ctx.input;
    if (out.length !== ctx.input.length || out.some((d, i) => d !== ctx.input[i])) {
      throw new InputError(`${ctx.where}: a residual block's layers must give back their input's shape [${ctx.input.join(', ')}], they give [${out.join(', ')}]`);
    }
    return { fields: {}, output: ctx.input, children };
  },
  toJson: () => ({ type: 'residual' }),
  cpu: {
    forward(node, _w, x, run) {
      const trace = run.forward(node.children, x);
      const f = trace.steps.length > 0 ? trace.steps[trace.steps.length - 1]!.y : x;
      return { y: x.map((v, i) => v + f[i]!), saved: trace };
    },
    backward(_node, _w, { dy, saved }, _g, wantDx, run) {
      const dxBranch = run.backward(saved as Parameters<typeof run.backward>[0], dy, wantDx);
      return dxBranch ? dxBranch.map((v, i) => v + dy[i]!) : undefined;
    },
  },
  gpu: (node, env) => new ResidualOp(node, env),
};
