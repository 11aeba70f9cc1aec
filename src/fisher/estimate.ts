/**
 * The estimator: streams the data through an engine in batches; the
 * structure (structures/) asks the engine for its per-batch partials and
 * sums them with compensation (DESIGN.md §1–3). Every structure is built
 * from the per-sample gradients g_{n,v} over "virtual samples" v per input,
 * by kind:
 *   empirical  one, the data's label                        c = 1/N
 *   mc         M labels ŷ ~ p(· | x_n, θ)                   c = 1/(N·M)
 *   exact      the columns of S, S Sᵀ = H (so Σ_v = J ᵀH J)  c = 1/N
 * and c without its 1/N for reduction 'sum'. Batches are as large as the
 * engine allows (or as asked), and a data source (a file) need hold no more
 * than two of them, so N is bounded by nothing but time.
 */
import type { GpuDevice } from '../gpu/device.js';
import { DATA_LABELS, type Engine, type LabelSource } from '../engine/engine.js';
import { engineFor } from '../engine/select.js';
import { Dataset, type DataSource } from '../model/data.js';
import type { Network } from '../model/network.js';
import { resolveOptions, type FisherOptions, type ResolvedOptions } from './options.js';
import type { FisherInfo, FisherMatrix } from './result.js';
import { planEvery, planStructure, refusal } from './plan.js';
import { checkShard, runDigest, shardRange } from './shard.js';
import { STRUCTURE_TYPES } from './structures/registry.js';

/**
 * The Fisher information of `model` on `data`.
 *
 * @param target a GPU device from `openDevice()`, or an engine (e.g. `new CpuEngine()`).
 */
export async function fisher(target: Engine | GpuDevice, model: Network, whole: DataSource, options: FisherOptions = {}): Promise<FisherMatrix> {
  const o = resolveOptions(options);
  whole.check(model);
  // A shard: its rows [first, first + n) of the data, its labels drawn as in the whole run (by dataset index).
  const { first, n } = rowsOf(o, whole.n);
  const engine = engineFor(target);
  const info: FisherInfo = {
    kind: o.kind,
    structure: o.structure,
    reduction: o.reduction,
    n,
    samples: o.samples,
    seed: o.seed,
    backend: engine.backend,
    ...(o.structure === 'kfac' || o.structure === 'ekfac' ? { kfac: o.kfac } : {}),
    ...(o.shard ? { shard: { ...o.shard, totalN: whole.n, run: await runDigest(model, whole, o) } } : {}),
  };
  // Refuses what the structure cannot hold before any work.
  const run = STRUCTURE_TYPES.get(o.structure)!.start(model, o, info);
  const loaded = await engine.load(model);
  try {
    const virtualSamples = labelSources(o, model, first).length;
    // The planner sizes the batches (every pass's), or refuses before any work.
    const plan = planStructure(loaded, model, o, virtualSamples, o.memoryBudget);
    if (!plan.fits) throw refusal(plan, planEvery(loaded, model, o, virtualSamples, o.memoryBudget));
    const batch = plan.batch;
    do {
      // Batch i + 1 is read while batch i computes (a file's rows come from disk; DataSource.rows allows one ahead).
      const read = (start: number) => whole.rows(first + start, first + Math.min(n, start + batch));
      let next: Promise<Dataset> | undefined = read(0);
      try {
        for (let start = 0; start < n; start += batch) {
          const rows = await next!;
          next = start + batch < n ? read(start + batch) : undefined;
          // One forward pass per batch; the engine runs one backward pass per virtual sample.
          await run.add(loaded, rows, labelSources(o, model, first + start));
          o.onProgress?.(start + rows.n, n);
        }
      } finally {
        // A read left behind by an error is awaited (its own error is the lesser one), so none is left unhandled.
        await next?.catch(() => undefined);
      }
      loaded.endPass();
    } while (await (run.nextPass?.() ?? false));
    return await run.result(info);
  } catch (e) {
    await run.abort?.();
    throw e;
  } finally {
    loaded.release();
  }
}

/**
 * Above this much host memory for its sums, a structure is not warmed up:
 * the warm-up's sums would be held beside the run's (its own first batch
 * builds the pipelines then).
 */
const WARM_UP_HOST_BYTES = 64 * 2 ** 20;

/**
 * Prepares `target` for `fisher(target, model, data, options)` before the
 * data is there: runs the same estimation on one synthetic batch (zeros,
 * target 0) and discards it, so that the pipelines the run will use are
 * built, and compiled by drivers that compile at first dispatch (lavapipe).
 * Call it while the data loads (the command line does); the run then finds
 * them built on the same device. Nothing is done on the CPU reference, or
 * for a structure whose sums take more than 64 MiB of host memory.
 */
export async function prepareFisher(target: Engine | GpuDevice, model: Network, options: FisherOptions = {}): Promise<void> {
  const engine = engineFor(target);
  const rows = engine.warmUpRows;
  if (rows === undefined) return;
  // Held in memory, over all the data, silent: what a spilled, sharded or watched run runs per batch all the same.
  const same: FisherOptions = { ...options, batchSize: rows };
  delete same.spill;
  delete same.shard;
  delete same.onProgress;
  const o = resolveOptions(same);
  const type = STRUCTURE_TYPES.get(o.structure)!;
  if (type.hostBytes(model, o) > WARM_UP_HOST_BYTES) return;
  const batch = new Dataset(new Float32Array(rows * model.inputs), new Float32Array(rows * model.targetWidth), rows, model.inputs, model.targetWidth);
  batch.check(model, 'the warm-up batch');
  const info: FisherInfo = { kind: o.kind, structure: o.structure, reduction: o.reduction, n: rows, samples: o.samples, seed: o.seed, backend: engine.backend };
  const run = type.start(model, o, info);
  const loaded = await engine.load(model);
  try {
    await run.add(loaded, batch, labelSources(o, model, 0));
    // Done when the batch has run: a driver that compiles at first dispatch compiles then.
    await engine.settle?.();
  } finally {
    await run.abort?.();
    loaded.release();
  }
}

/** The rows a run reads: all n, or its shard's [first, first + n). */
function rowsOf(o: ResolvedOptions, total: number): { first: number; n: number } {
  if (!o.shard) return { first: 0, n: total };
  checkShard(o.shard, total);
  const { start, end } = shardRange(o.shard, total);
  return { first: start, n: end - start };
}

/** The virtual samples of each input, for a batch starting at dataset index `start`. */
function labelSources(o: ResolvedOptions, model: Network, start: number): LabelSource[] {
  switch (o.kind) {
    case 'empirical':
      return [DATA_LABELS];
    case 'mc':
      return Array.from({ length: o.samples }, (_, draw) => ({ kind: 'sampled', seed: o.seed ?? 0, draw, firstSample: start }));
    case 'exact':
      return Array.from({ length: model.likelihood.factorColumns(model.outputs) }, (_, column) => ({ kind: 'factor', column }));
  }
}
