/**
 * shaders/likelihood.wgsl: the output gradient δ = ∂ℓ/∂f of the likelihood
 * head, one invocation per sample. Likelihood codes come from its LIK_*
 * constants.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { u32Constant } from '../gpu/reflect.js';
import { groups } from './dispatch.js';
import source from '../../shaders/likelihood.wgsl';

export const LIKELIHOOD_WGSL: string = source;
const WG = 64;

/** The WGSL code of a likelihood type, e.g. "bernoulli" → LIK_BERNOULLI. */
export function likelihoodCode(type: string): number {
  return u32Constant(source, `LIK_${type.toUpperCase()}`);
}

export class LikelihoodHead {
  private constructor(readonly kernel: ComputeKernel) {}

  static async create(gpu: GpuDevice, type: string): Promise<LikelihoodHead> {
    const kernel = await gpu.kernel({ family: 'likelihood', source, entry: 'output_gradient', overrides: { WG, LIKELIHOOD: likelihoodCode(type) } });
    return new LikelihoodHead(kernel);
  }

  /** δ [batch, outputs] from f [batch, outputs] and targets [batch, targetWidth]. */
  outputGradient(step: Step, p: { f: GPUBuffer; targets: GPUBuffer; delta: GPUBuffer; batch: number; outputs: number; targetWidth: number; precision: number }): void {
    this.kernel.encode(
      step.pass,
      step,
      { f: p.f, targets: p.targets, delta: p.delta },
      { n: p.batch, outputs: p.outputs, target_width: p.targetWidth, inv_variance: p.precision },
      [groups(p.batch, WG)],
    );
  }
}
