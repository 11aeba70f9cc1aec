/**
 * A sequence of layers as one GPU op: the planner of the GPU engine. It
 * builds each layer's op (src/layers), fuses an activation into the op
 * before it where that op can apply it (the matrix product's epilogue, as
 * the MLP kernels always did), holds the buffers of the values between the
 * layers, and runs the layers forward in order and backward in reverse.
 *
 * Stage k has an op, optionally a fused activation, and its buffers:
 *   y   its output (after the activation)          [capacity, size]
 *   z   the pre-activation, when an activation is fused whose derivative
 *       is not a function of its output (GELU), or in the last stage (whose
 *       output is the sequence's, which a residual block adds to): ReLU,
 *       tanh and sigmoid are differentiated from y (derivativeCode)
 *   d   ∂ℓ/∂ its pre-activation: what its backward pass consumes
 *   da  ∂ℓ/∂y, when the fused activation's derivative cannot go into the
 *       next op's epilogue (then an elementwise pass turns da into d)
 * The last stage writes the sequence's output buffer and reads the
 * sequence's output gradient; pass-through layers (flatten, identity) are
 * left out, as row-major data need no reshaping.
 */
import type { Step } from '../gpu/device.js';
import type { BackwardEpilogue, BackwardIO, ForwardIO, GpuEnv, GpuOp, LayerNode, ParameterLeaf, Shape } from '../layers/layer.js';
import { sizeOf } from '../layers/layer.js';
import { layerTypeOf } from '../layers/registry.js';
import { derivativeCode } from '../kernels/activation.js';

const F32 = 4;

interface Stage {
  op: GpuOp;
  node: LayerNode;
  /** The fused output activation's code. */
  act: number | undefined;
  /** Floats per sample of its output. */
  size: number;
  y: GPUBuffer | undefined;
  z: GPUBuffer | undefined;
  d: GPUBuffer | undefined;
  da: GPUBuffer | undefined;
}

export class SequenceOp implements GpuOp {
  readonly fusesOutputActivation = false;
  readonly fusesInputActivation = false;
  readonly #stages: Stage[] = [];
  readonly #size: number;
  #capacity = 0;

  constructor(
    readonly env: GpuEnv,
    nodes: readonly LayerNode[],
    input: Shape,
  ) {
    this.#size = sizeOf(input);
    for (const node of nodes) {
      const op = layerTypeOf(node).gpu(node, env);
      if (op.passThrough) continue;
      const last = this.#stages[this.#stages.length - 1];
      if (op.activation !== undefined && last && last.op.fusesOutputActivation && last.act === undefined) {
        last.act = op.activation;
        continue;
      }
      this.#stages.push({ op, node, act: undefined, size: sizeOf(node.output), y: undefined, z: undefined, d: undefined, da: undefined });
    }
  }

  /** Which buffers stage k needs: the last stage's output is the sequence's. */
  #needs(k: number): { y: boolean; z: boolean; d: boolean; da: boolean } {
    const s = this.#stages[k]!;
    const last = k === this.#stages.length - 1;
    const fused = s.act !== undefined;
    const next = this.#stages[k + 1];
    const atOutput = fused && !last && derivativeCode(s.act!).atOutput;
    return { y: !last, z: fused && !atOutput, d: !last || fused, da: fused && !last && !next!.op.fusesInputActivation };
  }

  /** How stage k's fused activation is differentiated: at z where it is kept, else at its output y. */
  #derivative(k: number): BackwardEpilogue {
    const s = this.#stages[k]!;
    if (s.z) return { code: s.act!, z: s.z };
    const d = derivativeCode(s.act!);
    if (!d.atOutput || !s.y) throw new Error(`${s.node.name ?? s.node.type}: no z kept for its activation's derivative`);
    return { code: d.code, z: s.y };
  }

  floatsPerSample(): number {
    let floats = 0;
    this.#stages.forEach((s, k) => {
      const n = this.#needs(k);
      floats += s.op.floatsPerSample() + s.size * [n.y, n.z, n.d, n.da].filter(Boolean).length;
    });
    return floats;
  }

  async allocate(capacity: number): Promise<void> {
    if (capacity <= this.#capacity) return;
    this.release();
    const gpu = this.env.gpu;
    for (const [k, s] of this.#stages.entries()) {
      const n = this.#needs(k);
      const alloc = async (what: string) => gpu.storage(capacity * s.size * F32, `${s.node.name ?? s.node.type}.${what}`);
      if (n.y) s.y = await alloc('y');
      if (n.z) s.z = await alloc('z');
      if (n.d) s.d = await alloc('d');
      if (n.da) s.da = await alloc('da');
      await s.op.allocate(capacity);
    }
    this.#capacity = capacity;
  }

  release(): void {
    for (const s of this.#stages) {
      for (const b of [s.y, s.z, s.d, s.da]) if (b) this.env.gpu.buffers.release(b);
      s.y = s.z = s.d = s.da = undefined;
      s.op.release();
    }
    this.#capacity = 0;
  }

  /** Stage k's input and output buffers, given the sequence's. */
  #io(k: number, x: GPUBuffer, y: GPUBuffer): { x: GPUBuffer; y: GPUBuffer } {
    return { x: k === 0 ? x : this.#stages[k - 1]!.y!, y: k === this.#stages.length - 1 ? y : this.#stages[k]!.y! };
  }

  /** ∂ℓ/∂ stage k's pre-activation, given the sequence's output gradient. */
  #dy(k: number, dy: GPUBuffer): GPUBuffer {
    const s = this.#stages[k]!;
    return k === this.#stages.length - 1 && s.act === undefined ? dy : s.d!;
  }

  forward(step: Step, io: ForwardIO): void {
    if (io.act) throw new Error('a sequence fuses no output activation');
    if (this.#stages.length === 0) {
      // Every layer passed the data through: the output is a copy of the input.
      this.env.kernels.elementwise.activationForward(step, { x: io.x, y: io.y, count: io.n * this.#size, activation: 0 });
      return;
    }
    this.#stages.forEach((s, k) => {
      s.op.forward(step, { n: io.n, ...this.#io(k, io.x, io.y), ...(s.act !== undefined ? { act: { code: s.act, ...(s.z ? { z: s.z } : {}) } } : {}) });
    });
  }

  backward(step: Step, io: BackwardIO): void {
    if (io.inputAct) throw new Error('a sequence fuses no input activation');
    const ew = this.env.kernels.elementwise;
    const stages = this.#stages;
    if (stages.length === 0) {
      if (io.dx) ew.activationBackward(step, { dy: io.dy, z: io.dy, dx: io.dx, count: io.n * this.#size, activation: 0 });
      return;
    }
    const last = stages[stages.length - 1]!;
    if (last.act !== undefined) {
      const act = this.#derivative(stages.length - 1);
      ew.activationBackward(step, { dy: io.dy, z: act.z, dx: last.d!, count: io.n * last.size, activation: act.code });
    }
    for (let k = stages.length - 1; k >= 0; k--) {
      const s = stages[k]!;
      const common = { n: io.n, ...this.#io(k, io.x, io.y), dy: this.#dy(k, io.dy) };
      if (k === 0) {
        s.op.backward(step, { ...common, ...(io.dx ? { dx: io.dx } : {}) });
        continue;
      }
      const below = stages[k - 1]!;
      if (below.act === undefined) s.op.backward(step, { ...common, dx: below.d! });
      else if (s.op.fusesInputActivation) s.op.backward(step, { ...common, dx: below.d!, inputAct: this.#derivative(k - 1) });
      else {
        s.op.backward(step, { ...common, dx: below.da! });
        const act = this.#derivative(k - 1);
        ew.activationBackward(step, { dy: below.da!, z: act.z, dx: below.d!, count: io.n * below.size, activation: act.code });
      }
    }
  }

  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[] {
    return this.#stages.flatMap((s, k) => s.op.leaves(k === 0 ? x : this.#stages[k - 1]!.y!, this.#dy(k, dy)));
  }
}
