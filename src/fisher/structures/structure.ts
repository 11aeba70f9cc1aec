/**
 * A structure (DESIGN.md §1, option `structure`) is one module of this
 * folder and one entry of registry.ts: what it asks the engine for per
 * batch, how it sums the batches, and the Fisher object it returns.
 */
import type { BatchStructure, LabelSource, LoadedModel } from '../../engine/engine.js';
import type { Dataset } from '../../model/data.js';
import type { LayerBlock, TensorLayout } from '../../model/layout.js';
import type { Network } from '../../model/network.js';
import type { FisherStructure, ResolvedOptions } from '../options.js';
import type { FisherInfo, FisherMatrix } from '../result.js';

/** One estimation in progress: the batches' partials, summed with compensation. */
export interface StructureRun {
  /** Adds one batch: one forward pass, one backward pass per label source. */
  add(loaded: LoadedModel, batch: Dataset, labels: readonly LabelSource[]): Promise<void>;
  /**
   * Called after each pass over the data (structures that need more than
   * one: EK-FAC, low-rank); true asks for another pass.
   */
  nextPass?(): boolean | Promise<boolean>;
  /** The Fisher, with the scalings of the kind and reduction `info` records. */
  result(info: FisherInfo): FisherMatrix | Promise<FisherMatrix>;
  /** Undoes what a failed estimation left (an unfinished file). */
  abort?(): Promise<void>;
}

/** A Fisher file opened for loading (fisher/load.ts): its header read, its tensors on demand. */
export interface FisherFile {
  readonly path: string;
  readonly info: FisherInfo;
  readonly layout: TensorLayout;
  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean;
  /** Tensor `name` as float64; a clear error where it is missing or shaped otherwise. */
  values(name: string, shape: readonly number[]): Promise<Float64Array>;
  /** The parameters' tensors of a layer's block (default: all of θ) in θ order, as float64. */
  parameterValues(block?: LayerBlock): Promise<Float64Array>;
  /** The byte of the file where tensor `name` (of this shape and dtype) starts: for results read by slices. */
  dataStart(name: string, shape: readonly number[], dtype: 'F32' | 'F64'): number;
}

export interface StructureType {
  readonly name: FisherStructure;
  /** What it asks the engine for, pass by pass kind (the planner sizes batches for each). */
  readonly engineWork: readonly BatchStructure[];
  /** Host bytes of its sums and its result (float64), for the planner. */
  hostBytes(model: Network, options: ResolvedOptions): number;
  /** Bytes of its result written to disk as it is computed (0 or absent: held in memory). */
  diskBytes?(model: Network, options: ResolvedOptions): number;
  /** Anything else the planner should say of it (a result written to disk, the passes that takes). */
  note?(model: Network, options: ResolvedOptions): string | undefined;
  /**
   * Starts an estimation; refuses, before any work, what this structure
   * cannot hold for `model`. `info` is what the result will record (N, the
   * kind's scale) for a structure that writes its result as it goes.
   */
  start(model: Network, options: ResolvedOptions, info: FisherInfo): StructureRun;
  /** The Fisher a file of this structure holds (Fisher.load). */
  load(file: FisherFile): Promise<FisherMatrix>;
}

/** c/M of DESIGN.md §1: 1/N under mean, 1 under sum, over the M label samples of mc. */
export function kindScale(info: FisherInfo): number {
  return (info.reduction === 'mean' ? 1 / info.n : 1) / info.samples;
}

/** Copies the upper triangle of a size × size row-major matrix onto the lower. */
export function mirrorUpper(m: Float64Array, size: number): void {
  for (let r = 1; r < size; r++) for (let c = 0; c < r; c++) m[r * size + c] = m[c * size + r]!;
}
