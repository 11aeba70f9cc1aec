/**
 * `fisher plan`: before any work, what every structure would need for this
 * model and data, on the device and on the host, against the device's
 * limits, the machine's free memory and --memory-budget; the batch it would
 * run at and why; and a mark on those that fit.
 */
import { readFile, statfs } from 'node:fs/promises';
import { freemem } from 'node:os';
import { selectEngine, type BackendChoice } from '../engine/select.js';
import { resolveOptions, type FisherKind, type FisherStructure, type KfacMode } from '../fisher/options.js';
import { planEvery } from '../fisher/plan.js';
import { formatBytes } from '../gpu/bytes.js';
import { InputError } from '../layers/errors.js';
import { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';

export interface PlanArgs {
  model: string;
  weights?: string;
  data?: string;
  kind: FisherKind;
  structure?: FisherStructure;
  samples?: number;
  kfac?: KfacMode;
  rank?: number;
  batchSize?: number;
  memoryBudget?: number;
  backend: BackendChoice;
}

/** The host's budget: --memory-budget, else the machine's free memory now. */
export function hostBudget(memoryBudget: number | undefined): number {
  return memoryBudget ?? freemem();
}

/** Bytes free to an unprivileged writer on the file system holding `dir`. */
export async function diskFree(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

export async function readSpec(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new InputError(`--model ${path}: ${(e as Error).message}`);
  }
}

export async function plan(args: PlanArgs): Promise<void> {
  // Sizes need only the spec: weights and data are read where given (the data for N and to be checked).
  const model = args.weights ? await Network.load(args.model, args.weights) : Network.random(await readSpec(args.model), 0);
  const data = args.data ? await Dataset.load(args.data, model) : undefined;
  const o = resolveOptions({ kind: args.kind, ...(args.samples === undefined ? {} : { samples: args.samples }), ...(args.batchSize === undefined ? {} : { batchSize: args.batchSize }) });
  // Every structure is planned: the options of one apply where they belong (the flags are checked by the parser).
  // `fisher compute` writes a result beyond host memory into its output file: plan as it would.
  const options = { ...o, spill: '(the output file)', ...(args.kfac === undefined ? {} : { kfac: args.kfac }), ...(args.rank === undefined ? {} : { rank: args.rank }) };
  const virtualSamples = o.kind === 'exact' ? model.likelihood.factorColumns(model.outputs) : o.samples;
  const budget = { ...(args.memoryBudget === undefined ? {} : { device: args.memoryBudget }), host: hostBudget(args.memoryBudget), disk: await diskFree('.') };
  const { engine, device, fallback } = await selectEngine(args.backend);
  if (fallback) process.stderr.write(`fisher: warning: ${fallback}; planning for the CPU reference path\n`);
  try {
    const loaded = await engine.load(model);
    try {
      const plans = planEvery(loaded, model, options, virtualSamples, budget);
      const lines = [
        `model: P = ${model.parameterCount}${data ? `, data: N = ${data.n}` : ''}; ${o.kind}${virtualSamples > 1 ? ` (${virtualSamples} backward passes per sample)` : ''}; on ${engine.describe()}`,
        `budget: device ${formatBytes(budget.device ?? 512 * 2 ** 20)}${args.memoryBudget === undefined ? ' (default, for batch sizes)' : ''}, host ${formatBytes(budget.host)}${args.memoryBudget === undefined ? ' (free memory now)' : ''}, disk ${formatBytes(budget.disk)} free here`,
        '',
        `${'structure'.padEnd(11)}${'fits'.padEnd(6)}${'batch'.padStart(7)}${'device'.padStart(12)}${'host'.padStart(12)}   (refused: the device bytes of a batch of one)`,
        ...plans.map((p) => `${(p.structure === args.structure ? `${p.structure} ←` : p.structure).padEnd(11)}${(p.fits ? '✓' : '✗').padEnd(6)}${(p.fits ? String(p.batch) : '-').padStart(7)}${formatBytes(p.device.total).padStart(12)}${formatBytes(p.host).padStart(12)}`),
        '',
        ...plans.flatMap((p) => [`${p.structure}:`, ...p.reasons.map((r) => `  ${r}`)]),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    } finally {
      loaded.release();
    }
  } finally {
    engine.dispose();
    device?.dispose();
  }
}
