/**
 * The one engine interface, with two implementations: `gpu` (WGSL kernels,
 * the product) and `cpu` (float64 plain loops, the reference). An estimator
 * in src/fisher streams batches through an engine and accumulates what it
 * returns; engines never see the whole dataset and never reduce across
 * batches (that is the estimator's compensated sum).
 *
 * Conventions, used by both engines and their callers:
 * - n indexes samples, o a layer's outputs, i its inputs, p parameters;
 * - per-sample gradient g_n = ∇θ ℓ_n, ℓ_n = −log p(y_n | x_n, θ), in the
 *   parameter order of src/model/layout.ts;
 * - matrices are row-major.
 */
import type { HeadLabels } from '../kernels/likelihood.js';
import type { Dataset } from '../model/data.js';
import type { Network } from '../model/network.js';
import type { OptimizerSpec, PenaltyGradient } from './optimizer.js';

export type Backend = 'gpu' | 'cpu';

/**
 * Which output gradients the per-sample gradients back-propagate (the Fisher
 * kinds of DESIGN.md §1):
 * - `data`: ∂ℓ/∂f with the data's targets (empirical);
 * - `sampled`: ∂ℓ/∂f with ŷ ~ p(· | x, θ), label draw `draw` of sample
 *   `firstSample + s` under `seed`, from counter-based uniforms both engines
 *   compute alike (mc);
 * - `factor`: column `column` of S with S Sᵀ = H, the output Fisher (exact).
 */
export type LabelSource = HeadLabels;

export const DATA_LABELS: LabelSource = { kind: 'data' };

/**
 * What an engine is asked to accumulate per batch: squared gradients (diag),
 * Gram tiles of per-sample gradient rows (full, block), Kronecker factors
 * (kfac).
 */
export type BatchStructure = 'diag' | 'full' | 'block' | 'kfac' | 'ekfac' | 'lowrank';

/** A diagonal block of Σ g gᵀ: the parameters [offset, offset + size); of it only rows [start, start + count) where `rows` is given. */
export interface GramBlock {
  offset: number;
  size: number;
  rows?: { start: number; count: number };
}

/**
 * A partial Gram matrix: rows [row0, row0 + rows) of diagonal block `block`
 * of Σ_n g_n g_nᵀ, each over the block's `size` columns. Only the upper
 * triangle (column ≥ row) is defined; entries below the diagonal may hold
 * anything, and the caller mirrors.
 */
export interface GramTile {
  /** Index into the blocks asked for (0 for the whole matrix). */
  block: number;
  row0: number;
  rows: number;
  /** rows × size, row-major. */
  values: Float32Array | Float64Array;
}

/**
 * One parametrised layer's K-FAC statistics over a batch (DESIGN.md §1), in
 * layout order: for a Kronecker-factored layer, sums over its ā rows (n·T of
 * them under `expand`; under `reduce` n, each the mean over the positions)
 * and over its δ rows of every virtual sample (under `reduce` each the sum
 * over the positions); for any other layer, its squared-gradient sums.
 * Only the upper triangles of `aa` and `gg` are defined.
 */
export type KroneckerPartial =
  | {
      kind: 'kronecker';
      /** How many ā rows were summed. */
      rows: number;
      /** Σ ā āᵀ, [inputs, inputs]. */
      aa: Float32Array | Float64Array;
      /** Σ ā, [inputs]. */
      a: Float32Array | Float64Array;
      /** Σ_v Σ δ δᵀ, [outputs, outputs]. */
      gg: Float32Array | Float64Array;
    }
  | { kind: 'diagonal'; squares: Float32Array | Float64Array };

export type KroneckerMode = 'expand' | 'reduce';

/** A factored layer's Kronecker eigenbasis: Q_A [ia, ia] and Q_G [out, out] row-major, columns the eigenvectors. */
export interface KroneckerBasis {
  qa: Float64Array;
  qg: Float64Array;
}

export interface Engine {
  readonly backend: Backend;
  /** One line naming the device (adapter and driver, or the CPU reference). */
  describe(): string;
  /** Prepares a model (uploads its weights, plans its buffers). */
  load(model: Network): Promise<LoadedModel>;
  /**
   * Rows of a batch that runs the kernels a full batch runs (a GPU builds
   * its pipelines on first use, and picks each product's shape by its
   * size: the primary shape's tile height); absent where nothing is
   * built on first use (the CPU reference).
   */
  readonly warmUpRows?: number;
  /** Waits for the work submitted so far to finish (a GPU's queue); absent where work is done when submitted. */
  settle?(): Promise<void>;
  /** Releases everything the engine holds. */
  dispose(): void;
}

/** What sizes a batch besides the structure: the label sources per input, K-FAC's mode, the low-rank sketch's width, a memory budget. */
export interface BatchOptions {
  virtualSamples?: number;
  kfac?: KroneckerMode;
  /** Vectors of the low-rank sketch. */
  sketch?: number;
  /** Bytes of device memory (GPU) or host memory (CPU) one batch may take; default: the engine's. */
  budget?: number;
}

/** The memory a batch of a structure takes on the engine's device (DESIGN.md §2: what the planner reads). */
export interface BatchMemory {
  /** Bytes per sample of the batch's buffers. */
  perSample: number;
  /** Bytes whatever the batch size: θ and the structure's fixed buffers. */
  fixed: number;
  /** The largest batch the device's limits allow (bindings, dispatch), whatever the budget. */
  maxBatch: number;
  /**
   * The largest batch the engine prefers where none is asked for, below
   * maxBatch, and why (a CPU adapter's diagonal: bench/RESULTS.md); absent
   * where it prefers the largest that fits.
   */
  preferred?: { batch: number; why: string };
  /** Of perSample and fixed, what every structure's batches share (the network's buffers, θ): held once however many passes run. */
  shared: { perSample: number; fixed: number };
}

/** A running total of squared-gradient sums (LoadedModel.squaredGradientTotal). */
export interface SquaredGradientTotal {
  /** Adds one batch's squaredGradientSum. */
  add(batch: Dataset, labels?: readonly LabelSource[]): Promise<void>;
  /** The total so far times `scale` (default 1), [P], float64: a new array, the caller's. */
  read(scale?: number): Promise<Float64Array>;
  /** Frees what the total holds; it cannot be used after. */
  release(): void;
}

export interface LoadedModel {
  readonly model: Network;
  /**
   * The largest batch the engine handles at once for this structure with
   * `virtualSamples` label sources per sample, from its memory and binding
   * limits.
   */
  maxBatch(structure: BatchStructure, virtualSamples?: number, options?: Omit<BatchOptions, 'virtualSamples'>): number;
  /** The memory a batch of `structure` takes: what maxBatch and the planner read. */
  memory(structure: BatchStructure, options?: BatchOptions): BatchMemory;
  /** Network outputs f (the last layer's output: logits or mean) at the current θ, [n, out]. */
  forward(x: Float32Array, n: number): Promise<Float32Array | Float64Array>;
  /** Per-sample gradients g_n, [n, P]. */
  gradients(batch: Dataset, labels?: LabelSource): Promise<Float32Array | Float64Array>;
  /**
   * Σ_v Σ_n g_{n,v} ⊙ g_{n,v} over the batch and the virtual samples v (one
   * per label source), [P]: one forward pass, one backward pass per source.
   */
  squaredGradientSum(batch: Dataset, labels?: readonly LabelSource[]): Promise<Float32Array | Float64Array>;
  /**
   * Optional: a running total of squaredGradientSum over batches, kept where
   * it is computed (on the device, with compensation) and read once, so that
   * no batch waits for a read-back and the host's sums. Engines without it
   * leave the total to the caller.
   */
  squaredGradientTotal?(): SquaredGradientTotal;
  /**
   * Σ_v Σ_n g_{n,v} g_{n,v}ᵀ over the batch, handed over tile by tile of
   * rows: of the whole matrix, or of each diagonal block asked for (`block`);
   * one forward pass.
   */
  gramSum(batch: Dataset, onTile: (tile: GramTile) => void, labels?: readonly LabelSource[], blocks?: readonly GramBlock[]): Promise<void>;
  /**
   * The K-FAC statistics of the batch per parametrised layer: one forward
   * pass (A's rows once), one backward pass per label source (G's rows).
   */
  kroneckerSums(batch: Dataset, labels: readonly LabelSource[], mode: KroneckerMode): Promise<KroneckerPartial[]>;
  /**
   * EK-FAC's second pass: per parametrised layer given a basis,
   * Σ_v Σ_n ((Q_Gᵀ G_{n,v} Q_A)_{ij})², [out, ia], G_{n,v} the per-sample
   * gradient of the augmented [W | b]; undefined for the layers without one.
   */
  rotatedSquareSums(batch: Dataset, labels: readonly LabelSource[], bases: readonly (KroneckerBasis | undefined)[]): Promise<(Float32Array | Float64Array | undefined)[]>;
  /**
   * The low-rank sketch: for each row ω_j of `omega` [k, P],
   * Σ_v Σ_n (g_{n,v} · ω_j) g_{n,v}, i.e. (F_batch Ωᵀ)ᵀ unscaled, [k, P].
   */
  sketchSum(batch: Dataset, labels: readonly LabelSource[], omega: Float32Array, k: number): Promise<Float32Array | Float64Array>;
  /** The gradient of the batch's mean loss, (1/n) Σ_n g_n, [P]. */
  meanGradient(batch: Dataset): Promise<Float32Array | Float64Array>;
  /**
   * Prepares training: the optimiser (its state reset) and the penalty whose
   * gradient is added to every step (none: zero).
   */
  setOptimizer(optimizer: OptimizerSpec, penalty?: PenaltyGradient): Promise<void>;
  /**
   * One optimiser step on the batch's mean loss plus the penalty. It updates
   * the engine's copy of θ; the GPU engine enqueues the step and returns
   * without waiting for the device.
   */
  trainStep(batch: Dataset): Promise<void>;
  /** θ as it is now (after every step so far), [P]. */
  parameters(): Promise<Float32Array | Float64Array>;
  /** Frees what a pass over the data left for reuse, before a pass of other work (the planner counts the larger pass, not both). */
  endPass(): void;
  /** Releases the model's buffers. */
  release(): void;
}
