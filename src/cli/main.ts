/**
 * The `fisher` command: parses flags, dispatches to a subcommand, and turns
 * every failure into one line on stderr with a non-zero exit.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { KFAC_MODES, KINDS, REDUCTIONS, STRUCTURES } from '../fisher/options.js';
import { bench, PEER_NAMES } from './bench.js';
import { compute } from './compute.js';
import { DEFAULT_EWC_SETTINGS, METHODS, type Method } from '../demo/ewc.js';
import { demo, DEMO_LEARNING_RATES } from './demo.js';
import { EXIT_FAILURE, reportError } from './errors.js';
import { makeExample } from './example.js';
import { writeExample } from './files.js';
import { info } from './info.js';
import { plan } from './plan.js';
import { forecastCommand, gradientsCommand } from './sources.js';
import { DEVICE_SOLVE_MIN_SIZE } from '../fisher/device-solve.js';
import { eigCommand, ewcPenaltyCommand, mergeCommand, mergeModelsCommand, mvCommand, solveCommand, statsCommand } from './operations.js';
import { SOLVE_METHODS } from '../fisher/result.js';
import { ARCHITECTURES, type Architecture } from '../model/architectures.js';
import { InputError } from '../layers/errors.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a non-negative integer');
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError('must be a positive number');
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (!(n >= 0) || !Number.isFinite(n)) throw new InvalidArgumentError('must be a non-negative number');
  return n;
}

/** Bytes, with an optional binary suffix: 512M, 2G, 1.5T, 100000. */
export function byteCount(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('must be a number of bytes, with an optional K, M, G or T (binary) suffix, e.g. 512M');
  const bytes = Math.floor(Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase()));
  if (!(bytes > 0)) throw new InvalidArgumentError('must be a positive number of bytes');
  return bytes;
}

function unitInterval(value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('must be a number from 0 to 1');
  return n;
}

function widthList(value: string): number[] {
  const w = value.split(',').map((s) => Number(s.trim()));
  if (w.length < 1 || w.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('must be positive integers, e.g. 100,100');
  return w;
}

function methodList(value: string): Method[] {
  const m = value.split(',').map((s) => s.trim());
  if (m.length === 0 || m.some((x) => !(METHODS as readonly string[]).includes(x))) throw new InvalidArgumentError(`must be a list of ${METHODS.join(', ')}`);
  return m as Method[];
}

function peerList(value: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter((s) => s);
  if (list.some((x) => !(PEER_NAMES as readonly string[]).includes(x))) throw new InvalidArgumentError(`must be a list of ${PEER_NAMES.join(', ')}`);
  return list;
}

function widths(value: string): number[] {
  const w = value.split(',').map((s) => Number(s.trim()));
  if (w.length < 2 || w.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('must be at least two positive integers, e.g. 784,100,10');
  return w;
}

/** i/k: the i-th (1-based) of k shards. */
function shardSpec(value: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(value.trim());
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (!m || !(count >= 1) || !(index >= 1) || index > count) throw new InvalidArgumentError('must be i/k with 1 ≤ i ≤ k, e.g. 2/8');
  return { index, count };
}

const dtypeOption = () => new Option('--dtype <dtype>', 'element type of the output file').choices(['F32', 'F64']).default('F32');

const backendOption = () => new Option('--backend <backend>', 'where to compute: the GPU, the CPU reference, or the GPU with a fallback').choices(['auto', 'gpu', 'cpu']).default('auto');

export function program(): Command {
  const cmd = new Command('fisher')
    .description('Fisher Information Matrices of neural networks on the GPU (WebGPU)')
    .version('0.1.0')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();

  cmd
    .command('compute')
    .description('compute the Fisher of a model on data and write it as safetensors')
    .requiredOption('--model <file>', 'model spec (JSON)')
    .requiredOption('--weights <file>', 'weights (safetensors, float32, PyTorch layout)')
    .requiredOption('--data <file>', 'data (safetensors: x [N, in] float32, y labels [N] or targets [N, out])')
    .requiredOption('--out <file>', 'output file (safetensors); written only when complete')
    .addOption(new Option('--kind <kind>', 'kind of Fisher').choices(KINDS).default('empirical'))
    .addOption(new Option('--structure <structure>', 'what to store').choices(STRUCTURES).default('diag'))
    .addOption(new Option('--reduction <reduction>', 'mean divides by N, sum does not').choices(REDUCTIONS).default('mean'))
    .addOption(new Option('--kfac <mode>', 'K-FAC over parameters shared by positions (conv2d pixels, leading dimensions of linear): expand (KFC) or reduce; --structure kfac and ekfac').choices(KFAC_MODES))
    .option('--rank <k>', 'eigenpairs kept, for --structure lowrank (default 64)', positiveInt)
    .option('--passes <n>', 'most passes over the data, for --structure lowrank (default 30)', positiveInt)
    .option('--samples <M>', 'label samples per input, for --kind mc', positiveInt)
    .option('--seed <s>', 'seed of the label samples, for --kind mc (the same on every backend)', nonNegativeInt)
    .option('--batch-size <n>', 'samples per batch (default: the largest the device allows)', positiveInt)
    .option('--memory-budget <bytes>', 'most device memory for the work and host memory for the result (e.g. 2G; default: 512M of device memory, the free host memory); refused before any work if it cannot fit', byteCount)
    .addOption(backendOption())
    .option('--shard <i/k>', 'only the i-th of k contiguous shards of the data (1-based); `fisher merge` combines the k outputs', shardSpec)
    .option('--no-tune', 'on the first use of an adapter, skip the short search of matmul shapes (the defaults of its kind; FISHER_GPU_TUNING=off does the same)')
    .option('--profile', 'print where the whole process\'s time went (start-up, reading, device, computing, writing) on stderr', false)
    .addOption(dtypeOption())
    .option('--quiet', 'no progress bar, no summary', false)
    .action(compute);

  const fisherFile = '--fisher <file>';
  const fisherHelp = 'a Fisher file written by fisher compute';
  cmd
    .command('mv')
    .description('the product F v, never forming a dense F where the structure is factored')
    .requiredOption(fisherFile, fisherHelp)
    .requiredOption('--vector <file>', 'v: safetensors of tensors named and shaped as the parameters')
    .requiredOption('--out <file>', 'F v, the same tensors (written atomically)')
    .addOption(dtypeOption())
    .action(mvCommand);

  cmd
    .command('solve')
    .description('x with (F + δI) x = g: a damped natural-gradient step')
    .requiredOption(fisherFile, fisherHelp)
    .requiredOption('--vector <file>', 'g: safetensors of tensors named and shaped as the parameters')
    .requiredOption('--out <file>', 'x, the same tensors (written atomically)')
    .option('--damping <δ>', 'δ ≥ 0', nonNegativeNumber, 0)
    .addOption(new Option('--method <method>', 'exact: the structure\'s own (elementwise, Cholesky, Kronecker eigenbasis, Woodbury); factored: K-FAC\'s π-damping; cg: conjugate gradients on F v').choices(SOLVE_METHODS).default('exact'))
    .option('--tolerance <t>', 'relative residual to reach: cg (default 1e-6), and the refinement of a solve on the GPU (default 1e-10)', positiveNumber)
    .option('--max-iterations <n>', 'cg: most iterations (default 10·P, at most 10,000)', positiveInt)
    .option('--no-retry', 'exact on block and full: refuse a matrix not positive definite at δ instead of retrying at 10× δ')
    .addOption(
      new Option('--backend <backend>', `exact on block and full: Cholesky on the GPU (refined in float64), on the host, or the GPU for blocks of ${DEVICE_SOLVE_MIN_SIZE} rows or more`)
        .choices(['auto', 'gpu', 'cpu'])
        .default('auto'),
    )
    .addOption(dtypeOption())
    .action(solveCommand);

  cmd
    .command('eig')
    .description('the top-k eigenpairs: exact through the factors (diag, kfac, ekfac, lowrank), Lanczos on F v (full, block)')
    .requiredOption(fisherFile, fisherHelp)
    .option('--k <k>', 'eigenpairs', positiveInt, 10)
    .option('--out <file>', 'eigenvalues [k] and eigenvectors [k, P] as safetensors')
    .option('--json', 'print the eigenvalues as JSON', false)
    .addOption(dtypeOption())
    .action(eigCommand);

  cmd
    .command('stats')
    .description('trace, Frobenius norm, log-determinant at a damping, top eigenvalue')
    .requiredOption(fisherFile, fisherHelp)
    .option('--damping <δ>', 'of log det(F + δI)', nonNegativeNumber, 0)
    .option('--json', 'as JSON', false)
    .action(statsCommand);

  cmd
    .command('merge')
    .description('Fishers of shards of the data (fisher compute --shard i/k) into the Fisher of all of it; refuses a missing, repeated or foreign shard')
    .argument('<files...>', 'Fisher files')
    .requiredOption('--out <file>', 'the merged Fisher')
    .addOption(dtypeOption())
    .action(mergeCommand);

  cmd
    .command('merge-models')
    .description("Fisher-weighted model merging (Matena & Raffel 2022): each parameter the models' values weighted by their Fishers' diagonals")
    .requiredOption('--weights <files...>', 'the models (safetensors state dicts)')
    .requiredOption('--fisher <files...>', 'one Fisher per model, in the same order')
    .requiredOption('--out <file>', 'the merged weights')
    .option('--floor <f>', "where the Fishers' total is at most this, the plain mean", nonNegativeNumber, 0)
    .action(mergeModelsCommand);

  cmd
    .command('ewc-penalty')
    .description("the EWC penalty (λ/2)(θ − θ*)ᵀF(θ − θ*) with any structure's Fisher")
    .requiredOption(fisherFile, fisherHelp)
    .requiredOption('--weights <file>', 'θ (safetensors)')
    .requiredOption('--anchor <file>', 'θ*, the weights the Fisher was computed at (safetensors)')
    .requiredOption('--lambda <λ>', 'penalty strength', nonNegativeNumber)
    .option('--out <file>', 'write the gradient λF(θ − θ*) there')
    .option('--json', 'as JSON', false)
    .action(ewcPenaltyCommand);

  cmd
    .command('gradients')
    .description('the Fisher of per-sample gradients you already have (from PyTorch, JAX, …): diag, full, block or lowrank')
    .requiredOption('--in <file>', 'safetensors with tensor g [N, P] (float32 or float64), read a chunk of rows at a time')
    .addOption(new Option('--structure <structure>', 'what to store').choices(['diag', 'full', 'block', 'lowrank']).default('diag'))
    .option('--model <file>', "a model spec (JSON): names the P columns by its parameters, and block's blocks are its layers")
    .option('--blocks <sizes>', 'block: the sizes of the diagonal blocks, in order, summing to P', widthList)
    .addOption(new Option('--reduction <reduction>', 'mean divides by N, sum does not').choices(REDUCTIONS).default('mean'))
    .option('--rank <k>', 'lowrank: eigenpairs (default 64)', positiveInt)
    .option('--passes <n>', 'lowrank: most passes over the gradients (default 30)', positiveInt)
    .option('--chunk <rows>', 'rows read at a time', positiveInt, 4096)
    .requiredOption('--out <file>', 'the Fisher file')
    .addOption(dtypeOption())
    .action(gradientsCommand);

  cmd
    .command('forecast')
    .description('the forecasting Fisher F = Σ_n J_nᵀ Σ⁻¹ J_n of a Gaussian noise model, with marginalised √(F⁻¹)_ii and conditional 1/√F_ii errors')
    .requiredOption('--jacobian <file>', 'safetensors with tensor J [N, C, P]: ∂(outputs)/∂θ at each data point')
    .requiredOption('--noise <file>', 'safetensors with "sigma" [C] (standard deviations of independent outputs) or "covariance" [C, C]')
    .requiredOption('--out <file>', 'fisher [P, P], marginal_errors [P], conditional_errors [P]')
    .option('--json', 'print the errors as JSON', false)
    .addOption(dtypeOption())
    .action(forecastCommand);

  cmd
    .command('plan')
    .description('before any work: the memory every structure needs for this model (and data), the batch it would run at and why, and which fit')
    .requiredOption('--model <file>', 'model spec (JSON)')
    .option('--weights <file>', 'weights (safetensors; sizes need only the spec)')
    .option('--data <file>', 'data (safetensors; checked against the model, N reported)')
    .addOption(new Option('--kind <kind>', 'kind of Fisher (exact runs a backward pass per output)').choices(KINDS).default('empirical'))
    .addOption(new Option('--structure <structure>', 'the structure to mark in the table').choices(STRUCTURES))
    .option('--samples <M>', 'label samples per input, for --kind mc', positiveInt)
    .addOption(new Option('--kfac <mode>', 'K-FAC over shared parameters').choices(KFAC_MODES))
    .option('--rank <k>', 'eigenpairs kept by lowrank (default 64)', positiveInt)
    .option('--batch-size <n>', 'samples per batch (default: the largest that fits)', positiveInt)
    .option('--memory-budget <bytes>', 'most device and host memory (e.g. 2G; default: 512M of device memory, the free host memory)', byteCount)
    .addOption(backendOption())
    .action(plan);

  cmd
    .command('info')
    .description('show the GPU adapter, its limits and features')
    .option('--json', 'as JSON', false)
    .action(info);

  const d = DEFAULT_EWC_SETTINGS;
  cmd
    .command('demo')
    .description('the main job on the built-in example: EWC against plain training and L2 on permuted MNIST, trained on the GPU')
    .option('--tasks <n>', 'number of tasks (permutations)', positiveInt, d.tasks)
    .option('--epochs <n>', 'epochs per task', positiveInt, d.epochs)
    .option('--batch-size <n>', 'samples per training step', positiveInt, d.batchSize)
    .addOption(new Option('--optimizer <name>', 'optimiser').choices(['sgd', 'adam']).default(d.optimizer.type))
    .option('--lr <rate>', `learning rate (default: ${DEMO_LEARNING_RATES.adam} for adam, ${DEMO_LEARNING_RATES.sgd} for sgd)`, positiveNumber)
    .option('--lambda-ewc <λ>', 'EWC penalty strength', nonNegativeNumber, d.lambdaEwc)
    .option('--lambda-l2 <λ>', 'L2 penalty strength', nonNegativeNumber, d.lambdaL2)
    .addOption(new Option('--fisher-kind <kind>', 'the kind of Fisher EWC uses (on the task\'s training data)').choices(KINDS).default(d.fisherKind))
    .addOption(new Option('--structure <structure>', "the structure of EWC's Fisher: diag (Kirkpatrick et al.) or kfac (Ritter et al. 2018), both applied on the device").choices(['diag', 'kfac']).default(d.fisherStructure))
    .option('--online <γ>', "online EWC: one anchor, the latest task's weights, with the running Fisher γF̃ + F_t (0 ≤ γ ≤ 1)", unitInterval)
    .option('--hidden <list>', 'hidden layer widths', widthList, d.hidden)
    .option('--methods <list>', 'methods to compare, of none, l2, ewc', methodList, d.methods)
    .option('--seed <s>', 'seed of the split, the permutations, the initial weights and the shuffling', nonNegativeInt, d.seed)
    .addOption(backendOption())
    .option('--no-tune', 'on the first use of an adapter, skip the short search of matmul shapes (the defaults of its kind; FISHER_GPU_TUNING=off does the same)')
    .option('--out-dir <dir>', 'where the JSON record and the plot go', 'results/ewc')
    .option('--out <file>', 'the JSON record (default: OUT_DIR/results.json)')
    .option('--plot <file>', 'the SVG plot (default: OUT_DIR/accuracy.svg)')
    .option('--quiet', 'no progress bars', false)
    .action(demo);

  cmd
    .command('bench')
    .description('headless benchmarks: the device\'s peaks, each workload\'s time, FLOP/s and memory, and the peers in the same run')
    .option('--quick', 'a run under a minute (the CI smoke test)', false)
    .option('--tune', 'first search the matmul kernel\'s shapes on this adapter and store the fastest in the tuning cache', false)
    .option('--json <file>', 'write every number as JSON')
    .option('--plot <file>', 'write the roofline plot as SVG')
    .option('--filter <text>', 'only workloads whose name contains this')
    .option('--cpu-budget <seconds>', 'run the CPU path peer where it is estimated to finish within this', positiveNumber, 30)
    .option('--peers <list>', `peers to run, of ${PEER_NAMES.join(', ')} (default: cpu with --quick, else all)`, peerList)
    .addOption(
      new Option('--whole-process [fresh]', 'also time `fisher compute` of 784-256-256-10 (N = 10⁴) as whole processes: the first run, then the median of three (fresh: the first with an empty tuning cache, its first-use search included)').argParser(
        (v: string) => {
          if (v !== 'fresh') throw new InvalidArgumentError('the only value is "fresh"');
          return 'fresh';
        },
      ),
    )
    .option('--runs <n>', 'with --whole-process: the runs after the first, whose median counts (default: 3)', positiveInt)
    .action(bench);

  cmd
    .command('example')
    .description('write a built-in example (model.json, weights.safetensors, data.safetensors)')
    .requiredOption('--out-dir <dir>', 'directory for the three files')
    .addOption(new Option('--arch <name>', 'mlp (widths below), cnn (LeNet-like, 28×28) or resnet (4 residual blocks, layer norm)').choices(ARCHITECTURES).default('mlp'))
    .option('--widths <list>', 'mlp layer widths, input first', widths)
    .option('--samples <n>', 'samples N', positiveInt, 10_000)
    .option('--seed <s>', 'seed of the weights and data', nonNegativeInt, 0)
    .action(async (a: { outDir: string; arch: Architecture; widths?: number[]; samples: number; seed: number }) => {
      if (a.widths && a.arch !== 'mlp') throw new InputError(`--widths applies to --arch mlp only (the ${a.arch} architecture is fixed)`);
      const { model, data } = await makeExample(a.arch, a.samples, a.seed, a.widths);
      const files = await writeExample(a.outDir, model, data);
      process.stdout.write(`wrote ${files.model}, ${files.weights}, ${files.data} (P = ${model.parameterCount}, N = ${data.n})\n`);
    });

  return cmd;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; commander has already printed its message.
      return e.exitCode === 0 ? 0 : 2;
    }
    reportError(e);
    return EXIT_FAILURE;
  }
}

/** Resolves once `stream` has taken everything written to it before (at once where it is closed). */
function drained(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed || !stream.writable) return resolve();
    stream.write('', () => resolve());
  });
}

// The command is done, its files written: exit now, once stdout and stderr have taken their output (pipes are
// asynchronous on macOS). Left to end by itself, the process took 0.07-0.1 s more on lavapipe after a device had
// been used: two threads that ran the pipeline builds wait on 100 ms timeouts, and the teardown waits for them
// (strace; paired medians of 12 alternated runs of the 784-256-256-10 example, 1.595 s against 1.500 s).
main(process.argv.slice(2)).then(async (code) => {
  process.exitCode = code;
  await Promise.all([drained(process.stdout), drained(process.stderr)]);
  process.exit(code);
});
