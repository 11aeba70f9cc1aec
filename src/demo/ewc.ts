/**
 * The continual-learning experiment of Kirkpatrick et al. (2017) on permuted
 * MNIST: for each method, train task 1, then task 2, …; after each stage,
 * measure the test accuracy on every task seen so far.
 *
 *   none  plain training: later tasks overwrite what earlier ones needed
 *   l2    + (λ/2) Σ_t ‖θ − θ*_t‖²: holds every weight back equally
 *   ewc   + (λ/2) Σ_t (θ − θ*_t)ᵀ F_t (θ − θ*_t): holds back the weights
 *         the Fisher of task t marks as important to it; F_t diagonal
 *         (Kirkpatrick et al.) or K-FAC (Ritter et al. 2018), one anchor
 *         per task or, online (Schwarz et al. 2018), the latest anchor with
 *         the running Fisher γF̃ + F_t
 */
import type { Engine } from '../engine/engine.js';
import type { OptimizerSpec } from '../engine/optimizer.js';
import { fisher } from '../fisher/estimate.js';
import type { FisherKind } from '../fisher/options.js';
import type { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';
import { mlpSpec } from '../model/spec.js';
import { ewcPenaltyGradient, OnlineEwc, type EwcAnchor } from '../fisher/penalty.js';
import { penaltyGradient, type Anchor } from '../train/penalty.js';
import { accuracy, train } from '../train/train.js';
import { CLASSES, mnistSplit, permutePixels, PIXELS, taskPermutation } from './mnist.js';

export const METHODS = ['none', 'l2', 'ewc'] as const;
export type Method = (typeof METHODS)[number];

export interface EwcSettings {
  tasks: number;
  epochs: number;
  batchSize: number;
  optimizer: OptimizerSpec;
  lambdaEwc: number;
  lambdaL2: number;
  fisherKind: FisherKind;
  /** The structure of EWC's Fisher: diag (Kirkpatrick et al.) or kfac (Ritter et al. 2018). */
  fisherStructure: 'diag' | 'kfac';
  /** Online EWC's decay γ (Schwarz et al. 2018): one anchor with the running Fisher γF̃ + F_t; absent: one anchor per task. */
  online?: number;
  /** Hidden layer widths; the input is 784 pixels and the output 10 classes. */
  hidden: number[];
  seed: number;
  /** Training samples of the 10,000; the rest are the test set. */
  trainSize: number;
  methods: Method[];
}

/** The defaults, chosen by the sweep in bench/ewc-sweep.ts (results in the README). */
export const DEFAULT_EWC_SETTINGS: EwcSettings = {
  tasks: 3,
  epochs: 5,
  batchSize: 64,
  optimizer: { type: 'adam', learningRate: 3e-3 },
  lambdaEwc: 1000,
  lambdaL2: 0.01,
  fisherKind: 'empirical',
  fisherStructure: 'diag',
  hidden: [100, 100],
  seed: 0,
  trainSize: 8000,
  methods: [...METHODS],
};

export interface EwcResult {
  settings: EwcSettings;
  /** accuracy[method][k][t]: test accuracy on task t + 1 after training task k + 1 (t ≤ k). */
  accuracy: Partial<Record<Method, number[][]>>;
  device: string;
  backend: string;
  seconds: { total: number; training: number; fisher: number; evaluation: number };
}

export interface EwcProgress {
  /** e.g. "ewc task 2/3". */
  label: string;
  done: number;
  total: number;
}

/** The demo's MLP: 784 pixels, the hidden widths with ReLU, 10 classes with softmax. */
export function modelSpec(hidden: readonly number[]): unknown {
  return mlpSpec([PIXELS, ...hidden, CLASSES]);
}

/** Runs every method over every task; the same settings and backend give the same numbers. */
export async function runEwc(engine: Engine, settings: EwcSettings, onProgress?: (p: EwcProgress) => void): Promise<EwcResult> {
  const t0 = performance.now();
  const seconds = { total: 0, training: 0, fisher: 0, evaluation: 0 };
  const timed = async <T>(key: 'training' | 'fisher' | 'evaluation', f: () => Promise<T>): Promise<T> => {
    const s = performance.now();
    try {
      return await f();
    } finally {
      seconds[key] += (performance.now() - s) / 1000;
    }
  };
  const split = mnistSplit(settings.trainSize, settings.seed);
  const tasks: { train: Dataset; test: Dataset }[] = [];
  for (let t = 0; t < settings.tasks; t++) {
    const perm = taskPermutation(t, settings.seed);
    tasks.push({ train: permutePixels(split.train, perm), test: permutePixels(split.test, perm) });
  }
  const initial = Network.random(modelSpec(settings.hidden), settings.seed);
  const result: EwcResult = { settings, accuracy: {}, device: engine.describe(), backend: engine.backend, seconds };

  for (const method of settings.methods) {
    let model = initial;
    const anchors: Anchor[] = [];
    const ewcAnchors: EwcAnchor[] = [];
    const online = settings.online === undefined ? undefined : new OnlineEwc(settings.online);
    const penalty = (lambda: number) => {
      if (method === 'l2') return penaltyGradient(anchors, lambda, model.parameterCount);
      return ewcPenaltyGradient(online ? online.anchors() : ewcAnchors, lambda);
    };
    const rows: number[][] = [];
    for (let k = 0; k < settings.tasks; k++) {
      const lambda = method === 'ewc' ? settings.lambdaEwc : settings.lambdaL2;
      const label = `${method.padEnd(4)} task ${k + 1}/${settings.tasks}`;
      model = await timed('training', () =>
        train(engine, model, tasks[k]!.train, {
          optimizer: settings.optimizer,
          epochs: settings.epochs,
          batchSize: settings.batchSize,
          seed: settings.seed * 100 + k,
          ...(method === 'none' || k === 0 ? {} : { penalty: penalty(lambda) }),
          onProgress: (done, total) => onProgress?.({ label, done, total }),
        }),
      );
      if (method !== 'none' && k + 1 < settings.tasks) {
        const theta = model.parameters();
        if (method === 'ewc') {
          const F = await timed('fisher', () => fisher(engine, model, tasks[k]!.train, { kind: settings.fisherKind, structure: settings.fisherStructure }));
          if (online) online.add(theta, F);
          else ewcAnchors.push({ theta, fisher: F });
        } else {
          anchors.push({ theta });
        }
      }
      const row: number[] = [];
      for (let t = 0; t <= k; t++) row.push(await timed('evaluation', () => accuracy(engine, model, tasks[t]!.test)));
      rows.push(row);
    }
    result.accuracy[method] = rows;
  }
  seconds.total = (performance.now() - t0) / 1000;
  return result;
}
