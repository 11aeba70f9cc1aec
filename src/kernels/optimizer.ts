/**
 * shaders/optimizer.wgsl: SGD (with momentum) and Adam steps on θ, with a
 * quadratic penalty's gradient added on the device.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { grid } from './dispatch.js';
import { WG } from './family.js';
import source from '../../shaders/optimizer.wgsl';

export const OPTIMIZER_WGSL: string = source;

/** Hyper-parameters of one step; `correction1/2` are Adam's 1 − β^t. */
export interface OptimizerStepParams {
  learningRate: number;
  momentum: number;
  beta1: number;
  beta2: number;
  epsilon: number;
  correction1: number;
  correction2: number;
}

export interface OptimizerBuffers {
  theta: GPUBuffer;
  grad: GPUBuffer;
  penaltyScale: GPUBuffer;
  penaltyCenter: GPUBuffer;
  moment1: GPUBuffer;
  moment2: GPUBuffer;
}

export class Optimizer {
  private constructor(
    readonly gpu: GpuDevice,
    readonly sgd: ComputeKernel,
    readonly adam: ComputeKernel,
  ) {}

  static async create(gpu: GpuDevice): Promise<Optimizer> {
    const [sgd, adam] = await Promise.all(
      (['sgd_step', 'adam_step'] as const).map((entry) => gpu.kernel({ family: 'optimizer', source, entry, overrides: { WG } })),
    );
    return new Optimizer(gpu, sgd!, adam!);
  }

  /** One step of `type` over the P parameters. SGD leaves moment2 untouched. */
  encode(step: Step, type: 'sgd' | 'adam', b: OptimizerBuffers, p: number, h: OptimizerStepParams): void {
    const buffers: Record<string, GPUBuffer> = {
      theta: b.theta,
      grad: b.grad,
      penalty_scale: b.penaltyScale,
      penalty_center: b.penaltyCenter,
      moment1: b.moment1,
    };
    if (type === 'adam') buffers['moment2'] = b.moment2;
    (type === 'sgd' ? this.sgd : this.adam).encode(
      step.pass,
      step,
      buffers,
      {
        p,
        learning_rate: h.learningRate,
        momentum: h.momentum,
        beta1: h.beta1,
        beta2: h.beta2,
        epsilon: h.epsilon,
        correction1: h.correction1,
        correction2: h.correction2,
      },
      grid(p, WG, this.gpu.limits.maxComputeWorkgroupsPerDimension),
    );
  }
}
