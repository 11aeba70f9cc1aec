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

  /**
   * dx [n, c, h, w] from dy [n, c, oh, ow] (and max pooling's `arg`). Max pooling whose windows
   * tile the input scatters from each window; otherwise every input element gathers.
   */
  backward(step: Step, mode: PoolMode, g: PoolGeometry, p: { n: number; dy: GPUBuffer; dx: GPUBuffer; arg?: GPUBuffer }): void {
    const count = p.n * g.c * g.h * g.w;
    if (mode === 'max') {
      if (!p.arg) throw new Error('pool2d: max pooling needs an arg buffer');
      const tiled = windowsTile(g);
      this.#family.dispatch1d(step, tiled ? 'max_backward_tiled' : 'max_backward', {}, { dy: p.dy, y: p.dx, arg_in: p.arg }, dims(g, p.n), tiled ? p.n * g.c * g.oh * g.ow : count);
    } else this.#family.dispatch1d(step, 'avg_backward', {}, { dy: p.dy, y: p.dx }, dims(g, p.n), count);
  }
}

/**
 * Whether every input element lies in exactly one window: stride = kernel (no overlap, no gap)
 * on both axes, and the last window reaching the far edge (window oy covers oy·k − pad … oy·k −
 * pad + k − 1, so the windows cover up to oh·k − pad).
 */
export function windowsTile(g: PoolGeometry): boolean {
  const axis = (size: number, out: number, k: number, stride: number, pad: number) => stride === k && out * k - pad >= size;
  return axis(g.h, g.oh, g.kernel[0], g.stride[0], g.padding[0]) && axis(g.w, g.ow, g.kernel[1], g.stride[1], g.padding[1]);
}
