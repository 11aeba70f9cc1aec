/**
 * shaders/elementwise.wgsl: activations not fused into a product, their
 * derivatives, the residual sum and its backward, the reduction of
 * per-sample gradient rows over the samples, and the reshapes K-FAC's rows
 * need (a transpose per sample, sums over positions), and running totals
 * summed on the device with compensation. One invocation per element.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { ACTIVATION_WGSL } from './activation.js';
import { grid } from './dispatch.js';
import { KernelFamily, WG } from './family.js';
import entries from '../../shaders/elementwise.wgsl';

export const ELEMENTWISE_WGSL = `${ACTIVATION_WGSL}\n${entries}`;

function dims(count: number, more: { rows?: number; ld?: number; offset?: number; scale?: number; slice?: number } = {}): Record<string, number> {
  return { count, rows: more.rows ?? 0, ld: more.ld ?? 0, offset: more.offset ?? 0, scale: more.scale ?? 1, slice: more.slice ?? 0 };
}

export class Elementwise {
  readonly #family: KernelFamily;

  constructor(gpu: GpuDevice) {
    this.#family = new KernelFamily(gpu, 'elementwise', ELEMENTWISE_WGSL);
  }

  /** y = act(x) over `count` values. */
  activationForward(step: Step, p: { x: GPUBuffer; y: GPUBuffer; count: number; activation: number }): void {
    this.#family.dispatch1d(step, 'activation_forward', { ACTIVATION: p.activation }, { x: p.x, y: p.y }, dims(p.count), p.count);
  }

  /** dx = dy ⊙ act'(z) over `count` values. */
  activationBackward(step: Step, p: { dy: GPUBuffer; z: GPUBuffer; dx: GPUBuffer; count: number; activation: number }): void {
    this.#family.dispatch1d(step, 'activation_backward', { ACTIVATION: p.activation }, { x: p.dy, pre: p.z, y: p.dx }, dims(p.count), p.count);
  }

  /** y += x over `count` values. */
  addInto(step: Step, p: { x: GPUBuffer; y: GPUBuffer; count: number }): void {
    this.#family.dispatch1d(step, 'add_into', {}, { x: p.x, y: p.y }, dims(p.count), p.count);
  }

  /** dx = (dy + dx) ⊙ act'(z), in place in dx; without an activation, the plain sum. */
  addBackward(step: Step, p: { dy: GPUBuffer; dx: GPUBuffer; count: number; act?: { code: number; z: GPUBuffer } }): void {
    // Without an activation z is never used; dy stands in for the binding.
    const overrides = { ACTIVATION: p.act?.code ?? 0 };
    this.#family.dispatch1d(step, 'add_backward', overrides, { x: p.dy, pre: p.act?.z ?? p.dy, y: p.dx }, dims(p.count), p.count);
  }

  /**
   * out[offset + j] = scale · Σ_s r(rows[s·ld + j]) for j < columns, r the
   * identity or the square: per-sample gradient rows summed over samples.
   * With `slices`, the rows are cut into that many parts of equal length
   * (the last shorter), part z's sums at out[offset + z·columns + j], for
   * the caller to add.
   */
  columnReduce(
    step: Step,
    p: { rows: GPUBuffer; out: GPUBuffer; columns: number; samples: number; ld: number; offset: number; scale: number; square: boolean; slices?: number },
  ): void {
    const slices = p.slices ?? 1;
    const [x, y] = grid(p.columns, WG, this.#family.gpu.limits.maxComputeWorkgroupsPerDimension);
    this.#family.dispatch(
      step,
      'column_reduce',
      { SQUARE: p.square },
      { x: p.rows, y: p.out },
      dims(p.columns, { rows: p.samples, ld: p.ld, offset: p.offset, scale: p.scale, slice: slices > 1 ? Math.ceil(p.samples / slices) : 0 }),
      [x, y, slices],
    );
  }

  /**
   * A running total on the device: (sum, compensation)[j] += rows[s·count + j]
   * for each s < samples, by Neumaier's compensated summation. The total is
   * sum + compensation, added in float64 by whoever reads them.
   */
  compensatedAdd(step: Step, p: { rows: GPUBuffer; sum: GPUBuffer; compensation: GPUBuffer; count: number; samples: number }): void {
    this.#family.dispatch1d(step, 'compensated_add', {}, { x: p.rows, y: p.sum, comp: p.compensation }, dims(p.count, { rows: p.samples, ld: p.count }), p.count);
  }

  /** Each of `batch` [rows, cols] matrices of x transposed into y from element `offset`. */
  transpose(step: Step, p: { x: GPUBuffer; y: GPUBuffer; batch: number; rows: number; cols: number; offset: number }): void {
    const count = p.batch * p.rows * p.cols;
    // One invocation per row of x.
    this.#family.dispatch1d(step, 'transpose', {}, { x: p.x, y: p.y }, dims(count, { rows: p.rows, ld: p.cols, offset: p.offset }), p.batch * p.rows);
  }

  /**
   * A layer's θ − θ* as its augmented [W | b] [outputs, inputs + bias]:
   * θ from element `offset`, θ* the layer's slice from element 0.
   */
  augmentedDifference(step: Step, p: { theta: GPUBuffer; center: GPUBuffer; out: GPUBuffer; offset: number; inputs: number; outputs: number; bias: boolean }): void {
    const count = p.outputs * (p.inputs + (p.bias ? 1 : 0));
    this.#family.dispatch1d(step, 'augmented_difference', {}, { x: p.theta, pre: p.center, y: p.out }, dims(count, { rows: p.outputs, ld: p.inputs, offset: p.offset }), count);
  }

  /** θ-shaped `into` from element `offset` += scale · the augmented [W | b] `x` put back in θ's layout. */
  augmentedAccumulate(step: Step, p: { x: GPUBuffer; into: GPUBuffer; offset: number; inputs: number; outputs: number; bias: boolean; scale: number }): void {
    const count = p.outputs * (p.inputs + (p.bias ? 1 : 0));
    this.#family.dispatch1d(step, 'augmented_accumulate', {}, { x: p.x, y: p.into }, dims(count, { rows: p.outputs, ld: p.inputs, offset: p.offset, scale: p.scale }), count);
  }

  /** y[offset + s·width + j] = scale · Σ_t x[(s·positions + t)·width + j] for s < batch. */
  positionsSum(step: Step, p: { x: GPUBuffer; y: GPUBuffer; batch: number; positions: number; width: number; offset: number; scale: number }): void {
    const count = p.batch * p.width;
    this.#family.dispatch1d(step, 'positions_sum', {}, { x: p.x, y: p.y }, dims(count, { rows: p.positions, ld: p.width, offset: p.offset, scale: p.scale }), count);
  }
}
