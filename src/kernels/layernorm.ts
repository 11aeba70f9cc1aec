/**
 * shaders/layernorm.wgsl: layer normalisation over the trailing d values of
 * each row (rows = samples × positions), forward saving x̂ and 1/σ, backward,
 * and the per-sample gradients of γ and β.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { groups } from './dispatch.js';
import { KernelFamily, WG } from './family.js';
import source from '../../shaders/layernorm.wgsl';

export const LAYERNORM_WGSL: string = source;

/** One layer norm's sizes: T positions of d values per sample. */
export interface NormGeometry {
  positions: number;
  d: number;
  eps: number;
  affine: boolean;
}

function dims(g: NormGeometry, n: number, wOffset: number, rows?: { ldg: number; offset: number }): Record<string, number> {
  return { rows: n * g.positions, d: g.d, positions: g.positions, affine: g.affine ? 1 : 0, eps: g.eps, w_offset: wOffset, ldg: rows?.ldg ?? 0, g_offset: rows?.offset ?? 0 };
}

export class LayerNorm {
  readonly #family: KernelFamily;

  constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'layernorm', LAYERNORM_WGSL);
  }

  /** y, and the saved x̂ [n·T, d] and 1/σ [n·T]. */
  forward(step: Step, g: NormGeometry, p: { n: number; x: GPUBuffer; theta: GPUBuffer; wOffset: number; y: GPUBuffer; xhat: GPUBuffer; rstd: GPUBuffer }): void {
    this.#family.dispatch1d(step, 'forward', {}, { x: p.x, theta: p.theta, y: p.y, xhat: p.xhat, rstd: p.rstd }, dims(g, p.n, p.wOffset), p.n * g.positions);
  }

  /** dx from dy and the saved x̂ and 1/σ. */
  backward(step: Step, g: NormGeometry, p: { n: number; dy: GPUBuffer; theta: GPUBuffer; wOffset: number; dx: GPUBuffer; xhat: GPUBuffer; rstd: GPUBuffer }): void {
    this.#family.dispatch1d(step, 'backward', {}, { dy: p.dy, theta: p.theta, y: p.dx, xhat_in: p.xhat, rstd_in: p.rstd }, dims(g, p.n, p.wOffset), p.n * g.positions);
  }

  /** g[offset + s·ldg + j]: γ's then β's per-sample gradient. */
  perSampleGradient(step: Step, g: NormGeometry, p: { n: number; dy: GPUBuffer; xhat: GPUBuffer; g: GPUBuffer; ldg: number; offset: number }): void {
    this.#family.dispatch(step, 'per_sample_grad', {}, { dy: p.dy, xhat_in: p.xhat, g: p.g }, dims(g, p.n, 0, p), [groups(2 * g.d, WG), p.n]);
  }
}
