/**
 * The `fisher` command: parses flags, dispatches to a subcommand, and turns
 * every failure into one line on stderr with a non-zero exit.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { KINDS, REDUCTIONS, STRUCTURES } from '../fisher/options.js';
import { compute } from './compute.js';
import { demo } from './demo.js';
import { EXIT_FAILURE, reportError } from './errors.js';
import { makeExample } from './example.js';
import { writeExample } from './files.js';
import { info } from './info.js';

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

function widths(value: string): number[] {
  const w = value.split(',').map((s) => Number(s.trim()));
  if (w.length < 2 || w.some((n) => !Number.isSafeInteger(n) || n < 1)) throw new InvalidArgumentError('must be at least two positive integers, e.g. 784,100,10');
  return w;
}

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
    .option('--batch-size <n>', 'samples per batch (default: the largest the device allows)', positiveInt)
    .addOption(backendOption())
    .addOption(new Option('--dtype <dtype>', 'element type of the output file').choices(['F32', 'F64']).default('F32'))
    .option('--quiet', 'no progress bar, no summary', false)
    .action(compute);

  cmd
    .command('info')
    .description('show the GPU adapter, its limits and features')
    .option('--json', 'as JSON', false)
    .action(info);

  cmd
    .command('demo')
    .description('run the main job on the built-in example')
    .option('--out-dir <dir>', 'where to write the example and its Fisher', 'results/demo')
    .option('--samples <n>', 'samples in the example dataset', positiveInt, 10_000)
    .addOption(backendOption())
    .option('--quiet', 'no progress bar', false)
    .action(demo);

  cmd
    .command('example')
    .description('write the built-in example (model.json, weights.safetensors, data.safetensors)')
    .requiredOption('--out-dir <dir>', 'directory for the three files')
    .option('--widths <list>', 'layer widths, input first', widths, [784, 100, 10])
    .option('--samples <n>', 'samples N', positiveInt, 10_000)
    .option('--seed <s>', 'seed of the weights and data', nonNegativeInt, 0)
    .action(async (a: { outDir: string; widths: number[]; samples: number; seed: number }) => {
      const { model, data } = await makeExample(a.widths, a.samples, a.seed);
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

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
