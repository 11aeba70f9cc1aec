/**
 * The memory planner (DESIGN.md §2): before any work, the bytes a structure
 * needs for this model and data, on the device (the engine's own account of
 * the buffers it allocates: per sample of a batch, and fixed) and on the host
 * (the structure's sums and result), against the device's limits and a
 * budget; the batch it chooses within them; and, where it cannot fit, a
 * refusal that says what it would need and which structures would fit.
 */
import type { BatchStructure, LoadedModel } from '../engine/engine.js';
import { formatBytes } from '../gpu/bytes.js';
import { InputError } from '../layers/errors.js';
import type { Network } from '../model/network.js';
import { STRUCTURES, type FisherStructure, type ResolvedOptions } from './options.js';
import { STRUCTURE_TYPES } from './structures/registry.js';
import { OVERSAMPLING } from './structures/lowrank.js';

/** Device memory one batch may take when no budget is given. */
export const DEFAULT_DEVICE_BUDGET = 512 * 2 ** 20;

export interface MemoryBudget {
  /** Bytes the device work may take (default DEFAULT_DEVICE_BUDGET for batch sizing). */
  device?: number;
  /** Bytes the host may hold (default: unbounded here; the command line passes the machine's free memory or --memory-budget). */
  host?: number;
  /** Bytes free where a result written to disk goes (default: unchecked; the command line passes the file system's). */
  disk?: number;
}

export interface StructurePlan {
  structure: FisherStructure;
  /** Samples per batch (the smallest over the structure's passes). */
  batch: number;
  /** Device bytes at that batch (refused: at a batch of one): θ and fixed buffers, plus the batch's buffers; the largest pass's. */
  device: { fixed: number; perSample: number; total: number };
  /** Host bytes of the structure's sums and result. */
  host: number;
  fits: boolean;
  /** Why the plan is what it is, one line each. */
  reasons: string[];
  /** Of the reasons, those that keep it from fitting. */
  problems: string[];
}

/** The plan of `structure` (default: the options') for `model` on `loaded`'s engine, within `budget`. */
export function planStructure(loaded: LoadedModel, model: Network, o: ResolvedOptions, virtualSamples: number, budget: MemoryBudget = {}, structure: FisherStructure = o.structure): StructurePlan {
  const type = STRUCTURE_TYPES.get(structure);
  if (!type) return { structure, batch: 0, device: { fixed: 0, perSample: 0, total: 0 }, host: 0, fits: false, reasons: [`${structure} is not implemented`], problems: [`${structure} is not implemented`] };
  const reasons: string[] = [];
  const problems: string[] = [];
  const refuse = (why: string) => {
    reasons.push(why);
    problems.push(why);
  };
  const deviceBudget = budget.device ?? DEFAULT_DEVICE_BUDGET;
  const host = type.hostBytes(model, { ...o, structure });
  const note = type.note?.(model, { ...o, structure });
  if (note) reasons.push(note);
  const disk = type.diskBytes?.(model, { ...o, structure }) ?? 0;
  if (budget.disk !== undefined && disk > budget.disk) {
    refuse(`disk: the result takes ${formatBytes(disk)}, more than the ${formatBytes(budget.disk)} free where it goes`);
  }
  if (budget.host !== undefined && host > budget.host) {
    refuse(`host: its sums and result take ${formatBytes(host)}, more than the ${formatBytes(budget.host)} available`);
  }
  let batch = Infinity;
  // Every pass runs at the same batch; the engine frees one pass's buffers before the next, so the largest pass counts.
  const passes: { fixed: number; perSample: number }[] = [];
  const sketch = Math.min(model.parameterCount, o.rank + OVERSAMPLING);
  for (const work of type.engineWork) {
    let mem;
    try {
      mem = loaded.memory(work, { virtualSamples, kfac: o.kfac, sketch, budget: deviceBudget });
    } catch (e) {
      refuse(`device: ${(e as Error).message}`);
      continue;
    }
    const byBudget = Math.floor((deviceBudget - mem.fixed) / mem.perSample);
    const b = Math.min(mem.maxBatch, byBudget, o.batchSize ?? mem.preferred?.batch ?? Infinity);
    passes.push(mem);
    if (b < 1) {
      refuse(`device (${passName(work)}): a batch of one needs ${formatBytes(mem.fixed + mem.perSample)} (${formatBytes(mem.fixed)} fixed, ${formatBytes(mem.perSample)} per sample), more than the ${formatBytes(deviceBudget)} budget`);
      continue;
    }
    const limit =
      b === o.batchSize
        ? 'the batch size asked for'
        : b === mem.maxBatch
          ? "the device's limits (bindings, dispatch, 4096 at most)"
          : b === mem.preferred?.batch
            ? `the engine's preference (${mem.preferred.why})`
            : `the ${formatBytes(deviceBudget)} budget`;
    reasons.push(`device (${passName(work)}): ${formatBytes(mem.fixed)} fixed + ${formatBytes(mem.perSample)} per sample; batch ${b}, set by ${limit}`);
    batch = Math.min(batch, b);
  }
  const fits = problems.length === 0;
  // What it takes at the batch chosen, or (refused) at a batch of one.
  const at = fits && Number.isFinite(batch) ? batch : 1;
  const largest = passes.reduce((a, m) => (m.fixed + at * m.perSample > a.fixed + at * a.perSample ? m : a), { fixed: 0, perSample: 0 });
  const device = { fixed: largest.fixed, perSample: largest.perSample, total: largest.fixed + at * largest.perSample };
  return { structure, batch: fits && Number.isFinite(batch) ? batch : 0, device, host, fits, reasons, problems };
}

function passName(work: BatchStructure): string {
  return work === 'ekfac' ? 'ekfac second pass' : `${work} pass`;
}

/** Plans for every structure this version computes. */
export function planEvery(loaded: LoadedModel, model: Network, o: ResolvedOptions, virtualSamples: number, budget: MemoryBudget = {}): StructurePlan[] {
  return STRUCTURES.filter((s) => STRUCTURE_TYPES.has(s)).map((s) => planStructure(loaded, model, o, virtualSamples, budget, s));
}

/** The refusal of a plan that does not fit: what it needs, and which structures would. */
export function refusal(plan: StructurePlan, every: readonly StructurePlan[]): InputError {
  const fitting = every.filter((p) => p.fits).map((p) => p.structure);
  return new InputError(
    `structure "${plan.structure}" does not fit: ${plan.problems.join('; ')}; ${fitting.length ? `structures that fit: ${fitting.join(', ')}` : 'no structure fits this budget'}`,
  );
}
