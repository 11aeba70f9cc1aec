/**
 * shaders/pool2d.wgsl: max and average pooling over a batch, forward and
 * backward (gathering, so overlapping windows need no atomics). Max pooling
 * saves the winner's index per output for its backward pass.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { KernelFamily } from './family.js';
import source from '../../shaders/pool2d.wgsl';

export const POOL2D_WGSL: string = source;

/** One pooling's sizes: input [c, h, w], output [c, oh, ow], per sample. */
export interface PoolGeometry {
  c: number;
  h: number;
  w: number;
  oh: number;
  ow: number;
  kernel: readonly [number, number];
  stride: readonly [number, number];
  padding: readonly [number, number];
}

export type PoolMode = 'max' | 'avg';

function dims(p: PoolGeometry, n: number): Record<string, number> {
  return {
    n,
    c: p.c,
    h: p.h,
    w: p.w,
    oh: p.oh,
    ow: p.ow,
    kh: p.kernel[0],
    kw: p.kernel[1],
    stride_h: p.stride[0],
    stride_w: p.stride[1],
    pad_h: p.padding[0],
    pad_w: p.padding[1],
  };
}

export class Pool2d {
  readonly #family: KernelFamily;

  constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'pool2d', POOL2D_WGSL);
  }

  /** y [n, c, oh, ow]; max pooling writes the winners' indices into `arg` (u32, as many as y). */
  forward(step: Step, mode: PoolMode, g: PoolGeometry, p: { n: number; x: GPUBuffer; y: GPUBuffer; arg?: GPUBuffer }): void {
    const count = p.n * g.c * g.oh * g.ow;
    if (mode === 'max') {
      if (!p.arg) throw new Error('pool2d: max pooling needs an arg buffer');
      this.#family.dispatch1d(step, 'max_forward', {}, { x: p.x, y: p.y, arg: p.arg }, dims(g, p.n), count);
    } else this.#family.dispatch1d(step, 'avg_forward', {}, { x: p.x, y: p.y }, dims(g, p.n), count);
  }

  /** dx [n, c, h, w] from dy [n, c, oh, ow] (and max pooling's `arg`). */
  backward(step: Step, mode: PoolMode, g: PoolGeometry, p: { n: number; dy: GPUBuffer; dx: GPUBuffer; arg?: GPUBuffer }): void {
    const count = p.n * g.c * g.h * g.w;
    if (mode === 'max') {
      if (!p.arg) throw new Error('pool2d: max pooling needs an arg buffer');
      this.#family.dispatch1d(step, 'max_backward', {}, { dy: p.dy, y: p.dx, arg_in: p.arg }, dims(g, p.n), count);
    } else this.#family.dispatch1d(step, 'avg_backward', {}, { dy: p.dy, y: p.dx }, dims(g, p.n), count);
  }
}
