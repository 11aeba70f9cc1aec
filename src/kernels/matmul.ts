/**
 * shaders/matmul.wgsl: the blocked products of the forward pass, the
 * backward pass, the squared-gradient reduction and the Gram matrix. This
 * wrapper owns the dispatch arithmetic and the shape rules of each product;
 * see the WGSL for the layouts.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { ACTIVATION_WGSL } from './activation.js';
import { groups } from './dispatch.js';
import matmulSource from '../../shaders/matmul.wgsl';

export const MATMUL_WGSL = `${ACTIVATION_WGSL}\n${matmulSource}`;

/** The shape choices of the blocked kernel (its overrides). */
export interface MatmulConfig {
  /** Rows and columns of C per invocation, 1…8. */
  tm: number;
  tn: number;
  /** Invocations per workgroup along m and n. */
  wgM: number;
  wgN: number;
}

// Measured on lavapipe (bench in issue 5 tunes per adapter): 8×8 blocks do 1.6–1.8× the FLOP/s of 4×4.
export const DEFAULT_MATMUL_CONFIG: MatmulConfig = { tm: 8, tn: 8, wgM: 8, wgN: 8 };

const MAX_T = 8;

type Entry = 'linear_forward' | 'linear_backward' | 'squared_gradient' | 'gram';

export class Matmul {
  readonly #kernels = new Map<string, ComputeKernel>();

  private constructor(
    readonly gpu: GpuDevice,
    readonly config: MatmulConfig,
  ) {}

  /**
   * Builds the pipelines: the reductions, and forward and backward for each
   * activation code that will be used.
   */
  static async create(gpu: GpuDevice, activationCodes: Iterable<number>, config: MatmulConfig = DEFAULT_MATMUL_CONFIG): Promise<Matmul> {
    for (const [k, v] of Object.entries(config)) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`matmul config ${k} = ${v} must be a positive integer`);
    }
    if (config.tm > MAX_T || config.tn > MAX_T) throw new RangeError(`matmul blocks are at most ${MAX_T}×${MAX_T}, got ${config.tm}×${config.tn}`);
    const mm = new Matmul(gpu, config);
    const wanted: [Entry, number][] = [
      ['squared_gradient', 0],
      ['gram', 0],
    ];
    for (const code of new Set(activationCodes)) wanted.push(['linear_forward', code], ['linear_backward', code]);
    await Promise.all(
      wanted.map(async ([entry, activation]) => {
        const kernel = await gpu.kernel({
          family: 'matmul',
          source: MATMUL_WGSL,
          entry,
          overrides: { TM: config.tm, TN: config.tn, WG_M: config.wgM, WG_N: config.wgN, ACTIVATION: activation },
        });
        mm.#kernels.set(`${entry}/${activation}`, kernel);
      }),
    );
    return mm;
  }

  #kernel(entry: Entry, activation = 0): ComputeKernel {
    const k = this.#kernels.get(`${entry}/${activation}`);
    if (!k) throw new Error(`matmul.${entry} for activation ${activation} was not built`);
    return k;
  }

  #workgroups(m: number, n: number): [number, number] {
    const c = this.config;
    return [groups(n, c.tn * c.wgN), groups(m, c.tm * c.wgM)];
  }

  /** Z = X Wᵀ + b and Y = act(Z): X [batch, in], W [out, in]; Z, Y [batch, out]. */
  forward(step: Step, p: { x: GPUBuffer; w: GPUBuffer; bias: GPUBuffer; z: GPUBuffer; y: GPUBuffer; batch: number; inputs: number; outputs: number; activation: number }): void {
    this.#kernel('linear_forward', p.activation).encode(
      step.pass,
      step,
      { a: p.x, b: p.w, bias: p.bias, c: p.z, c_act: p.y },
      { m: p.batch, n: p.outputs, k: p.inputs, lda: p.inputs, ldb: p.inputs, a_offset: 0 },
      this.#workgroups(p.batch, p.outputs),
    );
  }

  /**
   * δ' = (δ W) ⊙ act'(Z'): δ [batch, out], W [out, in], Z' [batch, in] the
   * pre-activation below (act its activation); δ' [batch, in].
   */
  backward(step: Step, p: { delta: GPUBuffer; w: GPUBuffer; zBelow: GPUBuffer; deltaBelow: GPUBuffer; batch: number; inputs: number; outputs: number; activation: number }): void {
    this.#kernel('linear_backward', p.activation).encode(
      step.pass,
      step,
      { a: p.delta, b: p.w, z_in: p.zBelow, c: p.deltaBelow },
      { m: p.batch, n: p.inputs, k: p.outputs, lda: p.outputs, ldb: p.inputs, a_offset: 0 },
      this.#workgroups(p.batch, p.inputs),
    );
  }

  /**
   * S[o, i] = Σ_s δ[s, o]² · ā[s, i]², ā = [a, 1]: δ [batch, out],
   * a [batch, in]; S [out, in + 1], whose last column is the bias's.
   */
  squaredGradient(step: Step, p: { delta: GPUBuffer; a: GPUBuffer; out: GPUBuffer; batch: number; inputs: number; outputs: number }): void {
    this.#kernel('squared_gradient').encode(
      step.pass,
      step,
      { a: p.delta, b: p.a, c: p.out },
      { m: p.outputs, n: p.inputs + 1, k: p.batch, lda: p.outputs, ldb: p.inputs, a_offset: 0 },
      this.#workgroups(p.outputs, p.inputs + 1),
    );
  }

  /**
   * F[r, c] = Σ_s G[s, row0 + r] · G[s, c] for r < rows: G [batch, P];
   * F [rows, P]. Only the upper triangle (c ≥ row0 + r) is written: blocks
   * wholly below the diagonal are skipped, so entries there are stale.
   */
  gram(step: Step, p: { g: GPUBuffer; out: GPUBuffer; batch: number; parameters: number; row0: number; rows: number }): void {
    this.#kernel('gram').encode(
      step.pass,
      step,
      { a: p.g, b: p.g, c: p.out },
      { m: p.rows, n: p.parameters, k: p.batch, lda: p.parameters, ldb: p.parameters, a_offset: p.row0 },
      this.#workgroups(p.rows, p.parameters),
    );
  }
}
