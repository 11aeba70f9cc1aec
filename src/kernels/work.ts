/**
 * The work model of the matrix kernels (shaders/matmul.wgsl): FLOPs and
 * compulsory bytes of each product, what the benchmark reports rates against
 * and the tuner scores shapes by.
 */

export type KernelOp = 'forward' | 'backward' | 'squared_gradient' | 'gram';

export interface WorkModel {
  flops: number;
  bytes: number;
}

const F32 = 4;

/** Work of one matrix kernel. For the Gram, `inputs` is P and only the upper triangle is computed. */
export function kernelWork(op: KernelOp, batch: number, inputs: number, outputs: number): WorkModel {
  switch (op) {
    case 'forward': // Z = X Wᵀ + b, Y = act(Z)
      return { flops: 2 * batch * inputs * outputs, bytes: F32 * (batch * inputs + outputs * (inputs + 1) + 2 * batch * outputs) };
    case 'backward': // δ' = (δ W) ⊙ act'(Z')
      return { flops: 2 * batch * inputs * outputs, bytes: F32 * (batch * outputs + outputs * inputs + 2 * batch * inputs) };
    case 'squared_gradient': // (δ²)ᵀ [a², 1]
      return { flops: 2 * batch * outputs * (inputs + 1), bytes: F32 * (batch * outputs + batch * inputs + outputs * (inputs + 1)) };
    case 'gram': // G ᵀG, upper triangle: P(P+1)/2 dot products of length batch
      return { flops: batch * inputs * (inputs + 1), bytes: F32 * (batch * inputs + inputs * inputs) };
  }
}
