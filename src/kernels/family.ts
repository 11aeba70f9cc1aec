/**
 * The pipelines of one WGSL file, built on first use: a dispatch whose
 * pipeline is not built yet asks its step to wait for the build (the step is
 * then encoded again, see GpuDevice.step), so entry points and override
 * values a run never uses cost nothing. Wrappers of the layer kernels encode
 * through this.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { BufferBinding, ComputeKernel, Overrides } from '../gpu/kernel.js';
import { grid } from './dispatch.js';

/** Invocations per workgroup of the one-dimensional kernels (the WG override of their WGSL). */
export const WG = 64;

export class KernelFamily {
  readonly #built = new Map<string, ComputeKernel>();

  constructor(
    readonly gpu: GpuDevice,
    readonly family: string,
    readonly source: string,
  ) {}

  /** Encodes `entry` with `overrides` (WG is added) over an explicit grid of workgroups. */
  dispatch(
    step: Step,
    entry: string,
    overrides: Overrides,
    buffers: Readonly<Record<string, BufferBinding>>,
    uniforms: Readonly<Record<string, number>>,
    workgroups: [number, number?, number?],
  ): void {
    const all = { WG, ...overrides };
    const key = `${entry}/${JSON.stringify(all)}`;
    const kernel = this.#built.get(key);
    if (!kernel) {
      step.awaitBuild(this.gpu.kernel({ family: this.family, source: this.source, entry, overrides: all }).then((k) => this.#built.set(key, k)));
      return;
    }
    kernel.encode(step, buffers, uniforms, workgroups);
  }

  /** Encodes `entry` over `count` invocations (a 2-D grid where one dimension is not enough; see dispatch.ts). */
  dispatch1d(
    step: Step,
    entry: string,
    overrides: Overrides,
    buffers: Readonly<Record<string, BufferBinding>>,
    uniforms: Readonly<Record<string, number>>,
    count: number,
  ): void {
    this.dispatch(step, entry, overrides, buffers, uniforms, grid(count, WG, this.gpu.limits.maxComputeWorkgroupsPerDimension));
  }
}
