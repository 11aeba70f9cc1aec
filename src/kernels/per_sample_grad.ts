/**
 * shaders/per_sample_grad.wgsl: one linear layer's block of the per-sample
 * gradients, summed over the T positions that share its parameters, written
 * into rows g[offset + s·ldg + …].
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { groups } from './dispatch.js';
import { KernelFamily, WG } from './family.js';
import source from '../../shaders/per_sample_grad.wgsl';

export const PER_SAMPLE_GRAD_WGSL: string = source;

export class PerSampleGrad {
  readonly #family: KernelFamily;

  constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'per_sample_grad', source);
  }

  /** g[offset + s·ldg + …] for δ [batch·T, out] and a [batch·T, in]. */
  encode(
    step: Step,
    p: { delta: GPUBuffer; a: GPUBuffer; g: GPUBuffer; batch: number; positions: number; inputs: number; outputs: number; bias: boolean; ldg: number; offset: number },
  ): void {
    const bias = p.bias ? 1 : 0;
    this.#family.dispatch(
      step,
      'per_sample_gradients',
      {},
      { delta: p.delta, a: p.a, g: p.g },
      { n: p.batch, inputs: p.inputs, outputs: p.outputs, positions: p.positions, has_bias: bias, ldg: p.ldg, offset: p.offset },
      [groups(p.outputs * (p.inputs + bias), WG), p.batch],
    );
  }
}
