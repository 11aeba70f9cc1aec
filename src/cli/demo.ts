/**
 * `fisher demo`: the main job on the built-in example. Until the EWC demo
 * lands, it computes the diagonal empirical Fisher of a 784-100-10 MLP over
 * 10,000 samples on the GPU, checks it against the float64 CPU path on a
 * subset, and prints what it found.
 */
import { join } from 'node:path';
import { CpuEngine } from '../engine/cpu.js';
import { selectEngine, type BackendChoice } from '../engine/select.js';
import { fisher } from '../fisher/estimate.js';
import { makeExample } from './example.js';
import { writeExample } from './files.js';
import { progressBar } from './progress.js';

export interface DemoArgs {
  outDir: string;
  samples: number;
  backend: BackendChoice;
  quiet: boolean;
}

const WIDTHS = [784, 100, 10];
const CHECK_SAMPLES = 500;

export async function demo(args: DemoArgs): Promise<void> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  const { engine, device, fallback } = await selectEngine(args.backend);
  if (fallback) process.stderr.write(`fisher: warning: ${fallback}; running on the CPU reference path instead (slow)\n`);
  try {
    say(`fisher-gpu demo on ${engine.describe()}`);
    const { model, data } = await makeExample(WIDTHS, args.samples, 0);
    const files = await writeExample(args.outDir, model, data);
    say(`example: MLP ${WIDTHS.join('-')} (ReLU, softmax), P = ${model.parameterCount}, N = ${data.n}; files in ${args.outDir}/`);

    const bar = progressBar('diag', { quiet: args.quiet });
    const t0 = performance.now();
    const F = await fisher(engine, model, data, { structure: 'diag', onProgress: (d, t) => bar.update(d, t) });
    const seconds = (performance.now() - t0) / 1000;
    bar.stop();
    const out = join(args.outDir, 'fisher-diag.safetensors');
    await F.save(out);
    say(`diagonal empirical Fisher: ${seconds.toFixed(3)} s (${engine.backend}), trace ${F.trace().toPrecision(6)}, written to ${out}`);

    const diag = F.diagonal();
    for (const e of model.layout.entries) {
      let s = 0;
      for (let i = e.offset; i < e.offset + e.size; i++) s += diag[i]!;
      say(`  ${e.name.padEnd(12)} ${`[${e.shape.join("×")}]`.padEnd(11)} share of the trace ${((100 * s) / F.trace()).toFixed(1).padStart(5)}%`);
    }

    if (engine.backend === 'gpu') {
      const subset = data.slice(0, Math.min(CHECK_SAMPLES, data.n));
      const [ref, got] = [await fisher(new CpuEngine(), model, subset), await fisher(engine, model, subset)];
      const r = ref.diagonal();
      const g = got.diagonal();
      let num = 0;
      let den = 0;
      for (let i = 0; i < r.length; i++) {
        num += (g[i]! - r[i]!) ** 2;
        den += r[i]! ** 2;
      }
      say(`check against the float64 CPU path on ${subset.n} samples: relative error ${Math.sqrt(num / den).toExponential(2)}`);
    }
    say(`next: fisher compute --model ${files.model} --weights ${files.weights} --data ${files.data} --structure diag --out fisher.safetensors`);
  } finally {
    engine.dispose();
    device?.dispose();
  }
}
