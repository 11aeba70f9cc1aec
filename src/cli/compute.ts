/** `fisher compute`: the Fisher of a model on data, written to a safetensors file. */
import { access, constants } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { selectEngine, type BackendChoice } from '../engine/select.js';
import { fisher, prepareFisher } from '../fisher/estimate.js';
import type { FisherKind, FisherOptions, FisherStructure, KfacMode, Reduction } from '../fisher/options.js';
import type { FileDtype } from '../fisher/result.js';
import type { DataSource } from '../model/data.js';
import { DataFile } from '../model/data-file.js';
import { MAX_BATCH } from '../engine/gpu.js';
import { shardRange } from '../fisher/shard.js';
import { InputError } from '../layers/errors.js';
import { Network } from '../model/network.js';
import { diskFree, hostBudget } from './plan.js';
import { kernelLines, Profile } from './profile.js';
import { progressBar } from './progress.js';

export interface ComputeArgs {
  model: string;
  weights: string;
  data: string;
  kind: FisherKind;
  structure: FisherStructure;
  reduction: Reduction;
  kfac?: KfacMode;
  rank?: number;
  passes?: number;
  batchSize?: number;
  memoryBudget?: number;
  samples?: number;
  seed?: number;
  backend: BackendChoice;
  out: string;
  dtype: FileDtype;
  shard?: { index: number; count: number };
  quiet: boolean;
  /** Search the matmul shapes on the first use of an adapter (`--no-tune`: the defaults of its kind). */
  tune: boolean;
  /** Print where the whole process's time went. */
  profile: boolean;
}

export async function compute(args: ComputeArgs): Promise<void> {
  // Fail on an unwritable destination before doing the work.
  await access(dirname(resolve(args.out)), constants.W_OK).catch(() => {
    throw new InputError(`--out ${args.out}: directory ${dirname(resolve(args.out))} does not exist or is not writable`);
  });
  const profile = new Profile(args.profile);
  const model = await Network.load(args.model, args.weights);
  profile.mark('reading the model and weights');
  const disk = await diskFree(dirname(resolve(args.out)));
  const bar = progressBar(`${args.kind} ${args.structure}`, { quiet: args.quiet });
  const options: FisherOptions = {
    kind: args.kind,
    structure: args.structure,
    reduction: args.reduction,
    ...(args.kfac === undefined ? {} : { kfac: args.kfac }),
    ...(args.rank === undefined ? {} : { rank: args.rank }),
    ...(args.passes === undefined ? {} : { passes: args.passes }),
    ...(args.batchSize === undefined ? {} : { batchSize: args.batchSize }),
    // The device budget where given; the host's: the budget, else the free memory now.
    memoryBudget: { ...(args.memoryBudget === undefined ? {} : { device: args.memoryBudget }), host: hostBudget(args.memoryBudget), disk },
    // A full Fisher beyond host memory goes straight into the output file, tile by tile (float32).
    ...(args.dtype === 'F32' ? { spill: args.out } : {}),
    ...(args.samples === undefined ? {} : { samples: args.samples }),
    ...(args.seed === undefined ? {} : { seed: args.seed }),
    ...(args.shard === undefined ? {} : { shard: args.shard }),
    onProgress: (done, total) => bar.update(done, total),
  };
  // The data file's header and targets are read and checked first (its errors are the first to report), and its
  // first batch of inputs is handed to the operating system to read before the device opens: the device's first
  // calls hold the main thread (0.13 s on lavapipe), and that read needs it only when it is done. The run's
  // pipelines are built as soon as the device is open (prepareFisher).
  const data: DataSource = await DataFile.open(args.data, model).then((file) => {
    // The first batch as large as the GPU engine's go: a smaller batch is a view of it.
    const first = args.shard ? shardRange(args.shard, file.n).start : 0;
    file.readAhead(first, first + MAX_BATCH);
    return file;
  }, (e: unknown) => {
    bar.stop();
    throw e;
  });
  profile.mark('reading the data\'s header and targets');
  const opening = selectEngine(args.backend, { tune: args.tune, say: (line) => process.stderr.write(`${line}\n`) });
  const preparing = opening.then(({ engine }) => prepareFisher(engine, model, options)).catch(() => undefined);
  const { engine, device, fallback } = await opening.catch((e: unknown) => {
    bar.stop();
    throw e;
  });
  profile.mark('opening the device, the first batch of inputs read meanwhile (the first use\'s search included)');
  await preparing;
  profile.mark('building the pipelines: what remained (a warm-up batch)');
  if (fallback) process.stderr.write(`fisher: warning: ${fallback}; computing on the CPU reference path instead (slow)\n`);
  try {
    const t0 = performance.now();
    const run = () => fisher(engine, model, data, options);
    // Under --profile the passes are timed on the device (timestamp queries), kernel by kernel, to split the computing.
    const { result: F, gpuSeconds, kernels } = args.profile && device ? await device.timed(run, { byKernel: true }) : { result: await run(), gpuSeconds: undefined, kernels: undefined };
    const seconds = (performance.now() - t0) / 1000;
    bar.stop();
    profile.mark('computing');
    if (gpuSeconds !== undefined) {
      profile.detail('the passes on the device (timestamp queries: the kernels, and lavapipe\'s compile at first dispatch)', gpuSeconds);
      for (const [kernel, kernelSeconds] of kernelLines(kernels ?? [])) profile.detail(`  ${kernel}`, kernelSeconds);
      profile.detail('the rest: reading the later batches, uploads, read-backs, host float64 sums, pipeline builds', seconds - gpuSeconds);
    }
    await F.save(args.out, { dtype: args.dtype });
    profile.mark('writing the output');
    if (!args.quiet) {
      process.stdout.write(
        `wrote ${args.out}: ${args.kind} ${args.structure} Fisher, ${F.info.shard ? `shard ${F.info.shard.index}/${F.info.shard.count}, N = ${F.info.n} of ${data.n}` : `N = ${data.n}`}, P = ${model.parameterCount}, ` +
          `trace ${F.trace().toPrecision(6)}, ${seconds.toFixed(2)} s${F.info.lowrank ? ` (${F.info.lowrank.passes} passes)` : ''} on ${engine.describe()}\n`,
      );
    }
    const lowrank = F.info.lowrank;
    if (lowrank && !lowrank.converged) {
      process.stderr.write(
        `fisher: warning: the rank-${lowrank.rank} eigenpairs did not converge in ${lowrank.passes} passes (Ritz values still moving by more than 1e-4·λ₁): the spectrum is flat there; raise --passes, or the rank for more separation\n`,
      );
    }
  } finally {
    bar.stop();
    engine.dispose();
    device?.dispose();
  }
  profile.mark('releasing the device');
  profile.write();
}
