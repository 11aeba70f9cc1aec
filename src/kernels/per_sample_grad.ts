/**
 * shaders/per_sample_grad.wgsl: one linear layer's block of the per-sample
 * gradients, summed over the T positions that share its parameters, written
 * into rows g[offset + s·ldg + …], in blocks of at most BO outputs by BI
 * input columns per invocation (the shader's constants).
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { u32Constant } from '../gpu/reflect.js';
import { KernelFamily } from './family.js';
import source from '../../shaders/per_sample_grad.wgsl';

export const PER_SAMPLE_GRAD_WGSL: string = source;

const BO = u32Constant(source, 'BO');
const BI = u32Constant(source, 'BI');

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
    // A block's outputs: BO, or all of them where the layer has fewer.
    const outputs = Math.min(BO, p.outputs);
    this.#family.dispatch1d(
      step,
      'per_sample_gradients',
      { OUTPUTS: outputs },
      { delta: p.delta, a: p.a, g: p.g },
      { n: p.batch, inputs: p.inputs, outputs: p.outputs, positions: p.positions, has_bias: bias, ldg: p.ldg, offset: p.offset },
      p.batch * Math.ceil(p.outputs / outputs) * Math.ceil((p.inputs + bias) / BI),
    );
  }
}
