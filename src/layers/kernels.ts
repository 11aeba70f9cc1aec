/**
 * The kernel wrappers the layers' GPU ops encode with, one instance of each
 * per engine model, and a small buffer that fills bindings an entry point
 * declares but a dispatch does not use.
 */
import type { GpuDevice } from '../gpu/device.js';
import { Conv2d } from '../kernels/conv2d.js';
import { Elementwise } from '../kernels/elementwise.js';
import { LayerNorm } from '../kernels/layernorm.js';
import type { Matmul } from '../kernels/matmul.js';
import { PerSampleGrad } from '../kernels/per_sample_grad.js';
import { Pool2d } from '../kernels/pool2d.js';

export interface LayerKernels {
  readonly matmul: Matmul;
  readonly elementwise: Elementwise;
  readonly perSample: PerSampleGrad;
  readonly conv2d: Conv2d;
  readonly pool2d: Pool2d;
  readonly layernorm: LayerNorm;
  /** 16 bytes, never read: the binding of an output a dispatch does not store. */
  readonly scratch: GPUBuffer;
}

export async function layerKernels(gpu: GpuDevice, matmul: Matmul): Promise<LayerKernels> {
  return {
    matmul,
    elementwise: new Elementwise(gpu),
    perSample: new PerSampleGrad(gpu),
    conv2d: new Conv2d(gpu),
    pool2d: new Pool2d(gpu),
    layernorm: new LayerNorm(gpu),
    scratch: await gpu.storage(16, 'scratch'),
  };
}
