/**
 * The estimator's options (DESIGN.md §1), their defaults and validation.
 * The names here are the library's and the command line's vocabulary.
 */
import { InputError } from '../model/errors.js';

export const KINDS = ['empirical', 'mc', 'exact'] as const;
export const STRUCTURES = ['diag', 'full', 'block', 'kfac', 'lowrank'] as const;
export const REDUCTIONS = ['mean', 'sum'] as const;

export type FisherKind = (typeof KINDS)[number];
export type FisherStructure = (typeof STRUCTURES)[number];
export type Reduction = (typeof REDUCTIONS)[number];

/** What this version computes; the rest of the tables above is planned (DESIGN.md). */
export const SUPPORTED_KINDS: readonly FisherKind[] = ['empirical'];
export const SUPPORTED_STRUCTURES: readonly FisherStructure[] = ['diag', 'full'];

export interface FisherOptions {
  /** Default 'empirical'. */
  kind?: FisherKind;
  /** Default 'diag'. */
  structure?: FisherStructure;
  /** 'mean' (default) divides by N; 'sum' does not. */
  reduction?: Reduction;
  /** Samples per batch; default: the largest the engine allows. */
  batchSize?: number;
  /** Called after each batch with the samples done and the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface ResolvedOptions {
  kind: FisherKind;
  structure: FisherStructure;
  reduction: Reduction;
  batchSize: number | undefined;
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
  if (o.batchSize !== undefined && (!Number.isSafeInteger(o.batchSize) || o.batchSize < 1)) {
    throw new InputError(`batch size must be a positive integer, got ${o.batchSize}`);
  }
  return { kind, structure, reduction, batchSize: o.batchSize, onProgress: o.onProgress };
}
