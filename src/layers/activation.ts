/**
 * The activations as layers without parameters (relu, tanh, sigmoid, gelu,
 * identity), one layer type per entry of the ACTIVATIONS table. On the GPU
 * the planner fuses an activation into the product before it where it can
 * (the op's epilogue); elsewhere it runs as its own elementwise pass.
 *
 *   y = f(x) elementwise;  dx = dy ⊙ f'(x)
 */
import type { Step } from '../gpu/device.js';
import { activationCode } from '../kernels/activation.js';
import { ACTIVATION_NAMES, ACTIVATIONS, type ActivationName } from './activations.js';
import type { BackwardIO, ForwardIO, GpuEnv, LayerNode, LayerType } from './layer.js';
import { sizeOf, StatelessOp } from './layer.js';

class ActivationOp extends StatelessOp {
  override readonly activation: number;
  override readonly passThrough: boolean;
  readonly #size: number;

  constructor(
    node: LayerNode,
    readonly env: GpuEnv,
    name: ActivationName,
  ) {
    super(node);
    this.activation = activationCode(name);
    this.passThrough = name === 'identity';
    this.#size = sizeOf(node.input);
  }

  forward(step: Step, io: ForwardIO): void {
    this.env.kernels.elementwise.activationForward(step, { x: io.x, y: io.y, count: io.n * this.#size, activation: this.activation });
  }

  backward(step: Step, io: BackwardIO): void {
    if (!io.dx) return;
    this.env.kernels.elementwise.activationBackward(step, { dy: io.dy, z: io.x, dx: io.dx, count: io.n * this.#size, activation: this.activation });
  }
}

function activationType(name: ActivationName): LayerType<Record<string, never>> {
  const { f, df } = ACTIVATIONS[name];
  return {
    type: name,
    keys: [],
    parse: (_raw, ctx) => ({ fields: {}, output: ctx.input }),
    toJson: () => ({ type: name }),
    cpu: {
      forward: (_node, _w, x) => ({ y: x.map(f) }),
      backward: (_node, _w, { x, dy }, _g, wantDx) => (wantDx ? dy.map((d, i) => d * df(x[i]!)) : undefined),
    },
    gpu: (node, env) => new ActivationOp(node, env, name),
  };
}

export const activations: readonly LayerType<Record<string, never>>[] = ACTIVATION_NAMES.map(activationType);
