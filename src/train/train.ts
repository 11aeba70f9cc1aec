/**
 * Mini-batch training on an engine (the GPU, or the CPU reference), built
 * from the same forward and backward passes as the Fisher computation, with
 * an optional penalty gradient added on the device; and evaluation.
 */
import type { GpuDevice } from '../gpu/device.js';
import type { Engine } from '../engine/engine.js';
import type { OptimizerSpec, PenaltyGradient } from '../engine/optimizer.js';
import { engineFor } from '../engine/select.js';
import { Dataset } from '../model/data.js';
import { InputError } from '../layers/errors.js';
import type { Network } from '../model/network.js';
import { permutation, Rng } from '../model/random.js';

/** θ stopped being finite: the step size is too large for the loss (or the penalty's stiffness). */
export class TrainingDivergedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TrainingDivergedError';
  }
}

export interface TrainOptions {
  /** Default Adam with learning rate 1e-3. */
  optimizer?: OptimizerSpec;
  /** Passes over the data; default 1. */
  epochs?: number;
  /** Samples per step; default 64. The last, smaller batch of an epoch is used too. */
  batchSize?: number;
  /** A penalty gradient added to every step (see penaltyGradient). */
  penalty?: PenaltyGradient;
  /** Seed of the shuffling; default 0. */
  seed?: number;
  /** Called after each step with the samples seen and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** Rows `index[start…end)` of `data`, gathered into a new batch. */
function gather(data: Dataset, index: Uint32Array, start: number, end: number): Dataset {
  const n = end - start;
  const x = new Float32Array(n * data.inputs);
  const y = new Float32Array(n * data.targetWidth);
  for (let r = 0; r < n; r++) {
    const s = index[start + r]!;
    x.set(data.x.subarray(s * data.inputs, (s + 1) * data.inputs), r * data.inputs);
    y.set(data.y.subarray(s * data.targetWidth, (s + 1) * data.targetWidth), r * data.targetWidth);
  }
  return new Dataset(x, y, n, data.inputs, data.targetWidth);
}

/**
 * Trains `model` on `data` and returns the trained model (the input is not
 * changed). Same seed, same backend: same numbers.
 */
export async function train(target: Engine | GpuDevice, model: Network, data: Dataset, options: TrainOptions = {}): Promise<Network> {
  const epochs = options.epochs ?? 1;
  const batchSize = options.batchSize ?? 64;
  if (!Number.isSafeInteger(epochs) || epochs < 0) throw new InputError(`epochs must be a non-negative integer, got ${epochs}`);
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new InputError(`batch size must be a positive integer, got ${batchSize}`);
  data.check(model);
  const loaded = await engineFor(target).load(model);
  try {
    const max = loaded.maxBatch('diag');
    const b = Math.min(batchSize, max);
    await loaded.setOptimizer(options.optimizer ?? { type: 'adam', learningRate: 1e-3 }, options.penalty);
    const rng = new Rng(options.seed ?? 0);
    const total = epochs * data.n;
    let theta: Float32Array | Float64Array = await loaded.parameters();
    for (let e = 0; e < epochs; e++) {
      const order = permutation(data.n, rng);
      for (let start = 0; start < data.n; start += b) {
        const end = Math.min(data.n, start + b);
        await loaded.trainStep(gather(data, order, start, end));
        options.onProgress?.(e * data.n + end, total);
      }
      // Once an epoch: has training diverged?
      theta = await loaded.parameters();
      const bad = theta.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new TrainingDivergedError(
          `training diverged in epoch ${e + 1}: θ[${bad}] is ${theta[bad]}; lower the learning rate or the penalty strength`,
        );
      }
    }
    return model.withParameters(theta);
  } finally {
    loaded.release();
  }
}

/** The fraction of samples whose largest output is their label (categorical models). */
export async function accuracy(target: Engine | GpuDevice, model: Network, data: Dataset): Promise<number> {
  if (model.likelihood.targets !== 'labels') throw new InputError('accuracy needs a model with class labels (a categorical likelihood)');
  data.check(model);
  const loaded = await engineFor(target).load(model);
  try {
    const f = await loaded.forward(data.x, data.n);
    const k = model.outputs;
    let correct = 0;
    for (let s = 0; s < data.n; s++) {
      let best = 0;
      for (let o = 1; o < k; o++) if (f[s * k + o]! > f[s * k + best]!) best = o;
      if (best === data.y[s]) correct++;
    }
    return correct / data.n;
  } finally {
    loaded.release();
  }
}
