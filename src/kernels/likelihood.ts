/**
 * shaders/likelihood.wgsl: the output gradient δ of the likelihood head, one
 * invocation per sample, with the labels of the data, sampled from the model,
 * or a column of the output Fisher's factor. Likelihood codes come from its
 * LIK_* constants.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { u32Constant } from '../gpu/reflect.js';
import { groups } from './dispatch.js';
import { KernelFamily, WG } from './family.js';
import source from '../../shaders/likelihood.wgsl';

export const LIKELIHOOD_WGSL: string = source;

/** The WGSL code of a likelihood type, e.g. "bernoulli" → LIK_BERNOULLI. */
export function likelihoodCode(type: string): number {
  return u32Constant(source, `LIK_${type.toUpperCase()}`);
}

/** Where the head's labels come from; mirrors the engine's LabelSource. */
export type HeadLabels = { kind: 'data' } | { kind: 'sampled'; seed: number; draw: number; firstSample: number } | { kind: 'factor'; column: number };

const ENTRIES = { data: 'output_gradient', sampled: 'sampled_output_gradient', factor: 'factor_output_gradient' } as const;

export class LikelihoodHead {
  readonly #family: KernelFamily;
  readonly #code: number;

  private constructor(gpu: GpuDevice, type: string) {
    this.#family = new KernelFamily(gpu, 'likelihood', source);
    this.#code = likelihoodCode(type);
  }

  /** The head of likelihood `type`; each entry's pipeline is built when a step first needs it. */
  static async create(gpu: GpuDevice, type: string): Promise<LikelihoodHead> {
    return new LikelihoodHead(gpu, type);
  }

  /** δ [batch, outputs] from f [batch, outputs] and, for data labels, targets [batch, targetWidth]. */
  outputGradient(
    step: Step,
    p: { f: GPUBuffer; targets: GPUBuffer; delta: GPUBuffer; batch: number; outputs: number; targetWidth: number; precision: number; labels?: HeadLabels },
  ): void {
    const labels = p.labels ?? { kind: 'data' };
    const buffers: Record<string, GPUBuffer> = { f: p.f, delta: p.delta };
    if (labels.kind === 'data') buffers['targets'] = p.targets;
    this.#family.dispatch(
      step,
      ENTRIES[labels.kind],
      { LIKELIHOOD: this.#code },
      buffers,
      {
        n: p.batch,
        outputs: p.outputs,
        target_width: p.targetWidth,
        inv_variance: p.precision,
        seed: labels.kind === 'sampled' ? labels.seed >>> 0 : 0,
        first_sample: labels.kind === 'sampled' ? labels.firstSample : 0,
        draw: labels.kind === 'sampled' ? labels.draw : 0,
        column: labels.kind === 'factor' ? labels.column : 0,
      },
      [groups(p.batch, WG)],
    );
  }
}
