/**
 * shaders/per_sample_grad.wgsl: one linear layer's block of the per-sample
 * gradients g[s, :], written into rows of stride P at the layer's offset.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { groups } from './dispatch.js';
import source from '../../shaders/per_sample_grad.wgsl';

export const PER_SAMPLE_GRAD_WGSL: string = source;
const WG = 64;

export class PerSampleGrad {
  private constructor(readonly kernel: ComputeKernel) {}

  static async create(gpu: GpuDevice): Promise<PerSampleGrad> {
    return new PerSampleGrad(await gpu.kernel({ family: 'per_sample_grad', source, entry: 'per_sample_gradients', overrides: { WG } }));
  }

  /** g[s, offset + …] for δ [batch, out] and a [batch, in]; g has row stride `parameters`. */
  encode(step: Step, p: { delta: GPUBuffer; a: GPUBuffer; g: GPUBuffer; batch: number; inputs: number; outputs: number; parameters: number; offset: number }): void {
    this.kernel.encode(
      step.pass,
      step,
      { delta: p.delta, a: p.a, g: p.g },
      { n: p.batch, inputs: p.inputs, outputs: p.outputs, ldg: p.parameters, offset: p.offset },
      [groups(p.outputs * (p.inputs + 1), WG), p.batch],
    );
  }
}
