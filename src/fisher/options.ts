/**
 * The estimator's options (DESIGN.md §1), their defaults and validation.
 * The names here are the library's and the command line's vocabulary.
 */
import { InputError } from '../layers/errors.js';
import type { ShardChoice } from './shard.js';
import { STRUCTURE_TYPES } from './structures/registry.js';

export const KINDS = ['empirical', 'mc', 'exact'] as const;
export const STRUCTURES = ['diag', 'full', 'block', 'kfac', 'ekfac', 'lowrank'] as const;
export const REDUCTIONS = ['mean', 'sum'] as const;
/** How K-FAC treats parameters shared over positions (DESIGN.md §1). */
export const KFAC_MODES = ['expand', 'reduce'] as const;

export type FisherKind = (typeof KINDS)[number];
export type FisherStructure = (typeof STRUCTURES)[number];
export type Reduction = (typeof REDUCTIONS)[number];
export type KfacMode = (typeof KFAC_MODES)[number];

/** What this version computes (the structures: those of structures/registry.ts); the rest of the tables above is planned (DESIGN.md). */
export const SUPPORTED_KINDS: readonly FisherKind[] = ['empirical', 'mc', 'exact'];
export const SUPPORTED_STRUCTURES: readonly FisherStructure[] = [...STRUCTURE_TYPES.keys()];

export interface FisherOptions {
  /** Default 'empirical'. */
  kind?: FisherKind;
  /** Default 'diag'. */
  structure?: FisherStructure;
  /** 'mean' (default) divides by N; 'sum' does not. */
  reduction?: Reduction;
  /** Label samples M per input for kind 'mc' (default 1). */
  samples?: number;
  /** Seed of the label samples for kind 'mc' (default 0): the same on every backend. */
  seed?: number;
  /** K-FAC over shared parameters (structure 'kfac'): 'expand' (default) or 'reduce'. */
  kfac?: KfacMode;
  /** The eigenpairs kept by structure 'lowrank' (default 64). */
  rank?: number;
  /** The most passes over the data of structure 'lowrank' (default 30). */
  passes?: number;
  /** Samples per batch; default: the largest the engine allows within the memory budget. */
  batchSize?: number;
  /**
   * Bytes the work may take on the device, and the result and its sums on
   * the host: one number for both, or each apart (default: 512 MiB of
   * device memory for a batch, the host unbounded but for each structure's
   * own limit). A request that cannot fit is refused before any work.
   */
  memoryBudget?: number | { device?: number; host?: number; disk?: number };
  /**
   * Where a full Fisher larger than host memory (or the host budget) is
   * written, tile by tile of rows, as it is computed: a safetensors path.
   * Without it such a request is refused.
   */
  spill?: string;
  /**
   * Only the index-th (1-based) of `count` contiguous shards of the data:
   * the result records the shard, N of the whole data and a digest of the
   * run, and `mergeShards` combines every shard's into the Fisher of the
   * whole data.
   */
  shard?: ShardChoice;
  /** Called after each batch with the samples done and the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ResolvedOptions {
  kind: FisherKind;
  structure: FisherStructure;
  reduction: Reduction;
  samples: number;
  seed: number | undefined;
  kfac: KfacMode;
  rank: number;
  passes: number;
  batchSize: number | undefined;
  memoryBudget: { device?: number; host?: number; disk?: number };
  spill: string | undefined;
  shard: ShardChoice | undefined;
  onProgress: ((done: number, total: number) => void) | undefined;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InputError(`${what} "${value}" is not one of ${allowed.join(', ')}`);
  return value as T;
}

export function resolveOptions(o: FisherOptions): ResolvedOptions {
  const kind = oneOf(o.kind ?? 'empirical', KINDS, 'kind');
  const structure = oneOf(o.structure ?? 'diag', STRUCTURES, 'structure');
  const reduction = oneOf(o.reduction ?? 'mean', REDUCTIONS, 'reduction');
  if (!SUPPORTED_KINDS.includes(kind)) throw new InputError(`kind "${kind}" is not implemented yet (this version computes: ${SUPPORTED_KINDS.join(', ')})`);
  if (!SUPPORTED_STRUCTURES.includes(structure)) {
    throw new InputError(`structure "${structure}" is not implemented yet (this version computes: ${SUPPORTED_STRUCTURES.join(', ')})`);
  }
  const kfac = oneOf(o.kfac ?? 'expand', KFAC_MODES, 'kfac');
  if (o.kfac !== undefined && structure !== 'kfac' && structure !== 'ekfac') throw new InputError(`kfac applies to structures "kfac" and "ekfac" only (structure is "${structure}")`);
  for (const [key, value] of [['rank', o.rank], ['passes', o.passes]] as const) {
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || value < 1) throw new InputError(`${key} must be a positive integer, got ${value}`);
    if (structure !== 'lowrank') throw new InputError(`${key} applies to structure "lowrank" only (structure is "${structure}")`);
  }
  if (o.batchSize !== undefined && (!Number.isSafeInteger(o.batchSize) || o.batchSize < 1)) {
    throw new InputError(`batch size must be a positive integer, got ${o.batchSize}`);
  }
  const budget = typeof o.memoryBudget === 'number' ? { device: o.memoryBudget, host: o.memoryBudget } : { ...o.memoryBudget };
  for (const [where, bytes] of Object.entries(budget)) {
    if (bytes !== undefined && !(Number.isFinite(bytes) && bytes > 0)) throw new InputError(`memory budget (${where}) must be a positive number of bytes, got ${bytes}`);
  }
  if (o.samples !== undefined && (!Number.isSafeInteger(o.samples) || o.samples < 1)) throw new InputError(`samples must be a positive integer, got ${o.samples}`);
  if (o.samples !== undefined && o.samples !== 1 && kind !== 'mc') throw new InputError(`samples applies to kind "mc" only (kind is "${kind}")`);
  if (o.seed !== undefined && (!Number.isSafeInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff)) throw new InputError(`seed must be an integer in [0, 2^32), got ${o.seed}`);
  return {
    kind,
    structure,
    reduction,
    samples: kind === 'mc' ? (o.samples ?? 1) : 1,
    seed: kind === 'mc' ? (o.seed ?? 0) : undefined,
    kfac,
    rank: o.rank ?? 64,
    passes: o.passes ?? 30,
    batchSize: o.batchSize,
    memoryBudget: budget,
    spill: o.spill,
    shard: o.shard,
    onProgress: o.onProgress,
  };
}
