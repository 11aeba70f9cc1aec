/**
 * shaders/optimizer.wgsl: SGD (with momentum) and Adam steps on θ, with a
 * quadratic penalty's gradient added on the device.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { KernelFamily } from './family.js';
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
  readonly #family: KernelFamily;

  private constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'optimizer', source);
  }

  /** The optimiser steps; each pipeline is built when a step first needs it (a Fisher run needs none). */
  static async create(gpu: GpuDevice): Promise<Optimizer> {
    return new Optimizer(gpu);
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
    this.#family.dispatch1d(
      step,
      type === 'sgd' ? 'sgd_step' : 'adam_step',
      {},
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
      p,
    );
  }
}
