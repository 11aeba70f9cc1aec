/**
 * Cholesky factorisation of large dense Fishers (`full`, `block`, and either
 * in a file) on the device, for `solve` and `logdet` where the P³/3 FLOPs of
 * a factorisation would take the host minutes.
 *
 * A right-looking blocked Cholesky A = Uᵀ U, `panel` rows at a time: the
 * diagonal block A11 comes back to the host and is factored there in
 * float64 (with the damping on its diagonal), A11 = L11 L11ᵀ; the panel
 * beside it becomes U12 = L11⁻¹ A12, a device product with the host's
 * L11⁻¹; and the trailing matrix takes A22 −= U12ᵀ U12 on its upper
 * triangle, a device product that holds almost all of the work. The upper
 * form reads both operands of that product along rows, as the Gram kernel
 * reads G: adjacent lanes read adjacent addresses, which real GPUs coalesce
 * (a lower form reads them along k; on lavapipe both ran at the same rate).
 * Each panel comes back to the host, so the factor L = Uᵀ lives
 * there (float64, its off-diagonal panels float32-accurate) and a solve is
 * two triangular substitutions, O(P²).
 *
 * The device works in float32, so a solve refines its answer against the
 * exact F in float64 (iterative refinement: x += (LLᵀ)⁻¹ (g − (F + δI) x)),
 * which reaches float64's residual wherever κ(F + δI) is well below
 * 1/ε₃₂ ≈ 10⁷; the report gives the refinements and the true residual.
 * Near that bound float32 either cannot factor F + δI (a pivot ≤ 0) or its
 * factor stops shrinking the residual: a Fisher held in memory is then
 * factored on the host in float64 instead (with the host's retries at
 * larger damping), so the answer is never worse than `F.solve`'s; one in a
 * file retries on the device at 10× the damping, as the host would, or
 * reports the residual it reached.
 *
 * Blocks smaller than `minDeviceSize` are factored on the host, where a
 * device round trip per panel would cost more than it saves. A block on the
 * device must fit one storage binding (P_l² float32 values): 128 MiB on
 * lavapipe (P_l ≤ 5,792), 2–4 GiB on discrete GPUs.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import { Matmul } from '../kernels/matmul.js';
import { matmulShapesFor } from '../engine/tuning.js';
import { InputError } from '../layers/errors.js';
import { choleskyFactor, choleskyLogdet, choleskySolveFactored, lowerInverse, NotPositiveDefiniteError } from '../linalg/cholesky.js';
import { transpose } from '../linalg/dense.js';
import { dot } from '../linalg/orthonormal.js';
import { checkDamping, checkLength, hasDenseBlocks, type DenseBlock, type FisherMatrix, type SolveReport } from './result.js';
import { StoredFisher } from './structures/spill.js';
import { retryFloor } from './structures/full.js';

export interface DeviceCholeskyOptions {
  /** δ ≥ 0 of F + δI (default 0). */
  damping?: number;
  /** Where F + δI is not positive definite, retry at 10× the damping and say so (default true); false: a clear error. */
  retry?: boolean;
  /** Columns per panel (default 256). */
  panel?: number;
  /** Blocks with fewer rows are factored on the host (default 512). */
  minDeviceSize?: number;
  /** The products to use (default: the adapter's tuned or default shapes). */
  matmul?: Matmul;
}

export interface DeviceSolveOptions {
  /** Relative residual ‖g − (F + δI) x‖ / ‖g‖ the refinement stops at (default 1e-10). */
  tolerance?: number;
  /** Most refinement steps (default 10). */
  maxRefinements?: number;
}

export interface DeviceSolveReport extends SolveReport {
  /** Refinement steps taken after the first substitution. */
  refinements: number;
  /** Blocks factored on the device (the rest on the host). */
  deviceBlocks: number;
}

const DEFAULT_PANEL = 256;
/**
 * The block size from which `fisher solve --backend auto` factors on the
 * device: on lavapipe (2 cores) the device took 1.45 s at P = 2048 against
 * the host's 6.0 s, and about as long as the host at 512, before the ~0.5 s
 * of opening the device (bench/RESULTS.md).
 */
export const DEVICE_SOLVE_MIN_SIZE = 2048;
const DEFAULT_MIN_DEVICE_SIZE = 512;

/** One block's factor: L with L Lᵀ = F_l + δI, [size, size] row-major (lower triangle). */
interface BlockFactor {
  block: DenseBlock;
  l: Float64Array;
  onDevice: boolean;
}

/** The Cholesky factor of F + δI, block by block; `solve` and `logdet` from it. */
export class DenseCholesky {
  #factors: BlockFactor[];

  constructor(
    readonly fisher: FisherMatrix,
    factors: readonly BlockFactor[],
    /** The damping asked for, and the one factored (larger after retries). */
    readonly requestedDamping: number,
    readonly damping: number,
    readonly retries: number,
  ) {
    this.#factors = [...factors];
  }

  /** Blocks factored on the device (the rest in float64 on the host). */
  get deviceBlocks(): number {
    return this.#factors.filter((f) => f.onDevice).length;
  }

  /**
   * x with (F + δI) x = g: substitution through the factor, refined against
   * F in float64. Where float32's factor does not bring the residual to the
   * tolerance and F is in memory, its device blocks are factored again on
   * the host in float64 (kept for later solves) and the solve repeated.
   */
  solve(g: ArrayLike<number>, options: DeviceSolveOptions = {}): DeviceSolveReport {
    checkLength(g, this.fisher.size, 'g');
    const tolerance = options.tolerance ?? 1e-10;
    const most = options.maxRefinements ?? 10;
    let r = this.#refined(g, tolerance, most);
    if (r.relative > tolerance && this.deviceBlocks > 0 && !(this.fisher instanceof StoredFisher)) {
      this.#factors = this.#factors.map((f) => (f.onDevice ? { block: f.block, l: hostFactor(f.block, this.damping), onDevice: false } : f));
      r = this.#refined(g, tolerance, most);
    }
    return {
      x: r.x,
      method: 'exact',
      requestedDamping: this.requestedDamping,
      damping: this.damping,
      retries: this.retries,
      relativeResidual: r.relative,
      converged: r.relative <= tolerance,
      refinements: r.refinements,
      deviceBlocks: this.deviceBlocks,
    };
  }

  #refined(g: ArrayLike<number>, tolerance: number, most: number): { x: Float64Array; relative: number; refinements: number } {
    const norm = Math.sqrt(dot(g, g));
    const x = this.#substitute(g);
    let { r, relative } = this.#residual(g, x, norm);
    let refinements = 0;
    while (relative > tolerance && refinements < most) {
      const dx = this.#substitute(r);
      const trial = new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) trial[i] = x[i]! + dx[i]!;
      const next = this.#residual(g, trial, norm);
      // A step that does not shrink the residual means the factor is no longer a preconditioner: stop.
      if (!(next.relative < relative)) break;
      x.set(trial);
      ({ r, relative } = next);
      refinements++;
    }
    return { x, relative, refinements };
  }

  /** log det(F + δI) from the factor (blocks factored on the device carry float32's relative error in each pivot). */
  logdet(): number {
    return this.#factors.reduce((s, f) => s + choleskyLogdet(f.l, f.block.size), 0);
  }

  #substitute(g: ArrayLike<number>): Float64Array {
    const x = new Float64Array(this.fisher.size);
    for (const { block, l } of this.#factors) x.set(choleskySolveFactored(l, block.size, g, block.offset), block.offset);
    return x;
  }

  #residual(g: ArrayLike<number>, x: Float64Array, norm: number): { r: Float64Array; relative: number } {
    const fx = this.fisher.mv(x);
    const r = new Float64Array(fx.length);
    for (let i = 0; i < fx.length; i++) r[i] = g[i]! - fx[i]! - this.damping * x[i]!;
    return { r, relative: norm === 0 ? Math.sqrt(dot(r, r)) : Math.sqrt(dot(r, r)) / norm };
  }
}

/**
 * The Cholesky factor of F + δI, its large blocks factored on the device
 * (see the module's comment). Refuses structures that are not dense blocks:
 * their exact solves go through their factors on the host (`F.solve`).
 */
export async function choleskyOnDevice(gpu: GpuDevice, fisher: FisherMatrix, options: DeviceCholeskyOptions = {}): Promise<DenseCholesky> {
  if (!hasDenseBlocks(fisher)) {
    throw new InputError(`a ${fisher.info.structure} Fisher is not dense: its exact solve runs through its factors on the host (F.solve); the device Cholesky is for full and block`);
  }
  const requested = checkDamping(options.damping);
  const panel = options.panel ?? DEFAULT_PANEL;
  if (!Number.isSafeInteger(panel) || panel < 1) throw new InputError(`panel must be a positive integer, got ${panel}`);
  const minDevice = options.minDeviceSize ?? DEFAULT_MIN_DEVICE_SIZE;
  const retry = options.retry ?? true;
  const matmul = options.matmul ?? (await Matmul.create(gpu, matmulShapesFor(gpu)));
  const blocks = fisher.denseBlocks();
  const maxBinding = gpu.limits.maxStorageBufferBindingSize;
  const floor = retryFloor(fisher.trace(), fisher.size);
  // A Fisher in a file cannot be factored on the host (that is why it is in a file).
  const inMemory = !(fisher instanceof StoredFisher);

  const factors: BlockFactor[] = [];
  let damping = requested;
  let retries = 0;
  for (const block of blocks) {
    const device = block.size >= minDevice;
    if (device && 4 * block.size * block.size > maxBinding) {
      throw new InputError(
        `block ${block.name} (P_l = ${block.size}) takes ${4 * block.size * block.size} bytes as float32, more than the device's ${maxBinding}-byte storage binding: solve it with method "cg" or on the host`,
      );
    }
    // The damping is one for all blocks: a retry in one block refactors those before it at the new damping.
    const attempt = async (d: number): Promise<BlockFactor> => {
      if (!device) return { block, l: hostFactor(block, d), onDevice: false };
      try {
        return { block, l: await factorBlockOnDevice(matmul, block, d, panel), onDevice: true };
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError) || !inMemory) throw e;
        // float32 could not factor it: float64 on the host can (or retries as it would).
        return { block, l: hostFactor(block, d), onDevice: false };
      }
    };
    let f: BlockFactor | undefined;
    for (;;) {
      try {
        f = await attempt(damping);
        break;
      } catch (e) {
        if (!(e instanceof NotPositiveDefiniteError) || !retry || retries >= 30) throw e;
        damping = Math.max(10 * damping, floor);
        retries++;
        // Earlier blocks were factored at a smaller damping: factor them again.
        for (let k = 0; k < factors.length; k++) factors[k] = await attemptAgain(factors[k]!, damping, matmul, panel);
      }
    }
    factors.push(f);
  }
  return new DenseCholesky(fisher, factors, requested, damping, retries);
}

async function attemptAgain(f: BlockFactor, damping: number, matmul: Matmul, panel: number): Promise<BlockFactor> {
  return f.onDevice ? { ...f, l: await factorBlockOnDevice(matmul, f.block, damping, panel) } : { ...f, l: hostFactor(f.block, damping) };
}

/** L of F_l + δI in float64 on the host. */
function hostFactor(block: DenseBlock, damping: number): Float64Array {
  return named(block, () => choleskyFactor(block.rows(0, block.size), block.size, damping));
}

/** Re-raises a pivot failure with the block's name and its row in F. */
function named<T>(block: DenseBlock, f: () => T, row0 = 0): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof NotPositiveDefiniteError) throw new NotPositiveDefiniteError(block.offset + row0 + e.pivot, e.value, block.name === 'fisher' ? undefined : `block ${block.name}`);
    throw e;
  }
}

/** The blocked factorisation of one block on the device; L on the host, float64. */
async function factorBlockOnDevice(matmul: Matmul, block: DenseBlock, damping: number, panel: number): Promise<Float64Array> {
  const gpu = matmul.gpu;
  const p = block.size;
  const bs = Math.min(panel, p);
  const F32 = 4;
  const matrix = await gpu.storage(F32 * p * p, `cholesky ${block.name}`);
  // The panel U12 [bs, p − bs], then the next diagonal block [bs, bs] behind it: one read-back per panel.
  const panelBuffer = await gpu.storage(F32 * (p * bs + bs * bs), `cholesky ${block.name} panel`);
  const inverse = await gpu.storage(F32 * bs * bs, `cholesky ${block.name} L11⁻¹`);
  try {
    // Upload in slices of rows (about 64 MiB each), as float32.
    const rowsPerSlice = Math.max(1, Math.floor(2 ** 24 / p));
    for (let r0 = 0; r0 < p; r0 += rowsPerSlice) {
      const count = Math.min(rowsPerSlice, p - r0);
      gpu.write(matrix, Float32Array.from(block.rows(r0, count)), F32 * r0 * p);
    }
    const l = new Float64Array(p * p);
    const copyDiagonal = (step: Step, r0: number, w: number, at: number) => {
      for (let i = 0; i < w; i++) step.copyAfter(matrix, F32 * ((r0 + i) * p + r0), panelBuffer, F32 * (at + i * w), F32 * w);
    };
    const w0 = Math.min(bs, p);
    await gpu.step(`cholesky ${block.name} diagonal 0`, (step) => copyDiagonal(step, 0, w0, 0));
    let diagonal = await gpu.readF32(panelBuffer, F32 * w0 * w0);
    for (let r0 = 0; r0 < p; r0 += bs) {
      const w = Math.min(bs, p - r0);
      const below = p - r0 - w;
      // The device keeps the upper triangle; choleskyFactor reads the lower: transpose.
      const l11 = named(block, () => choleskyFactor(transpose(diagonal, w, w), w, damping), r0);
      for (let i = 0; i < w; i++) l.set(l11.subarray(i * w, i * w + i + 1), (r0 + i) * p + r0);
      if (below === 0) break;
      gpu.write(inverse, Float32Array.from(lowerInverse(l11, w)));
      const next = Math.min(bs, below);
      const nextAt = w * below;
      await gpu.step(`cholesky ${block.name} panel ${r0 / bs}`, (step) => {
        // U12 = U11⁻ᵀ A12 = L11⁻¹ A12 [w, below]; then A22 −= U12ᵀ U12 above the diagonal.
        matmul.product(step, { a: inverse, lda: w, b: matrix, bOffset: r0 * p + r0 + w, ldb: p, c: panelBuffer, ldc: below, m: w, n: below, k: w });
        matmul.upperUpdate(step, { a: panelBuffer, lda: below, b: panelBuffer, ldb: below, c: matrix, cOffset: (r0 + w) * p + r0 + w, ldc: p, m: below, n: below, k: w });
        copyDiagonal(step, r0 + w, next, nextAt);
      });
      const read = await gpu.readF32(panelBuffer, F32 * (nextAt + next * next));
      // L21 = U12ᵀ.
      for (let j = 0; j < w; j++) for (let i = 0; i < below; i++) l[(r0 + w + i) * p + r0 + j] = read[j * below + i]!;
      diagonal = read.subarray(nextAt, nextAt + next * next);
    }
    return l;
  } finally {
    for (const b of [matrix, panelBuffer, inverse]) gpu.buffers.release(b);
  }
}

/** x with (F + δI) x = g, a full or block Fisher factored on the device, refined in float64 (see the module's comment). */
export async function solveOnDevice(gpu: GpuDevice, fisher: FisherMatrix, g: ArrayLike<number>, options: DeviceCholeskyOptions & DeviceSolveOptions = {}): Promise<DeviceSolveReport> {
  checkLength(g, fisher.size, 'g');
  return (await choleskyOnDevice(gpu, fisher, options)).solve(g, options);
}
