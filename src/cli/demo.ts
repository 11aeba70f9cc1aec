/**
 * `fisher demo`: the main job on the built-in example. Elastic weight
 * consolidation on permuted MNIST, trained and measured on the GPU: plain
 * training, an L2 pull and EWC over the same sequence of tasks, with the
 * accuracy table on stdout and the JSON record and the plot in a folder.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DEFAULT_EWC_SETTINGS, runEwc, type EwcSettings, type Method } from '../demo/ewc.js';
import { accuracySvg } from '../demo/plot.js';
import { accuracyTable, resultJson } from '../demo/report.js';
import { selectEngine, type BackendChoice } from '../engine/select.js';
import type { FisherKind } from '../fisher/options.js';
import { writeFileAtomic } from '../io/atomic.js';
import { progressBar, type Progress } from './progress.js';

export interface DemoArgs {
  tasks: number;
  epochs: number;
  batchSize: number;
  optimizer: 'sgd' | 'adam';
  lr?: number;
  lambdaEwc: number;
  lambdaL2: number;
  fisherKind: FisherKind;
  structure: 'diag' | 'kfac';
  online?: number;
  hidden: number[];
  methods: Method[];
  seed: number;
  backend: BackendChoice;
  tune: boolean;
  outDir: string;
  out?: string;
  plot?: string;
  quiet: boolean;
}

/** The default learning rate of each optimiser for this demo (see the README's sweep). */
export const DEMO_LEARNING_RATES = { sgd: 0.05, adam: DEFAULT_EWC_SETTINGS.optimizer.learningRate } as const;

export async function demo(args: DemoArgs): Promise<void> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const settings: EwcSettings = {
    ...DEFAULT_EWC_SETTINGS,
    tasks: args.tasks,
    epochs: args.epochs,
    batchSize: args.batchSize,
    optimizer: { type: args.optimizer, learningRate: args.lr ?? DEMO_LEARNING_RATES[args.optimizer] },
    lambdaEwc: args.lambdaEwc,
    lambdaL2: args.lambdaL2,
    fisherKind: args.fisherKind,
    fisherStructure: args.structure,
    ...(args.online === undefined ? {} : { online: args.online }),
    hidden: args.hidden,
    methods: args.methods,
    seed: args.seed,
  };
  const jsonPath = args.out ?? join(args.outDir, 'results.json');
  const plotPath = args.plot ?? join(args.outDir, 'accuracy.svg');
  for (const p of [jsonPath, plotPath]) await mkdir(dirname(p), { recursive: true });

  const { engine, device, fallback } = await selectEngine(args.backend, { tune: args.tune, say: (line) => process.stderr.write(`${line}\n`) });
  if (fallback) process.stderr.write(`fisher: warning: ${fallback}; running on the CPU reference path instead (very slow)\n`);
  let bar: Progress | undefined;
  let barLabel = '';
  try {
    const how = `${settings.fisherStructure} Fisher${settings.online === undefined ? '' : `, online γ = ${settings.online}`}`;
    say(`EWC on permuted MNIST (${settings.tasks} tasks, MLP 784-${settings.hidden.join('-')}-10), EWC with a ${how}, on ${engine.describe()}`);
    const result = await runEwc(engine, settings, (p) => {
      if (p.label !== barLabel) {
        bar?.stop();
        bar = progressBar(p.label, { quiet: args.quiet });
        barLabel = p.label;
      }
      bar!.update(p.done, p.total);
    });
    bar?.stop();
    say('');
    say(accuracyTable(result));
    say('');
    await writeFileAtomic(jsonPath, `${JSON.stringify(resultJson(result), null, 2)}\n`);
    await writeFileAtomic(plotPath, await accuracySvg(result));
    const s = result.seconds;
    say(`${s.total.toFixed(1)} s in all (training ${s.training.toFixed(1)} s, Fisher ${s.fisher.toFixed(1)} s, evaluation ${s.evaluation.toFixed(1)} s) on ${result.backend}`);
    say(`wrote ${jsonPath} and ${plotPath}`);
  } finally {
    bar?.stop();
    engine.dispose();
    device?.dispose();
  }
}
