/**
 * K-FAC's factor Grams at the widths of convolutions (thin, over many rows):
 * gram_sliced's time per row on each thinner version of a shape
 * (thinnerConfigs), best of three after a first, with the one the cost model
 * chooses (thinGramChoice) marked. The shape is the adapter kind's first
 * default unless SHAPE gives one as JSON.
 *
 *   node tools/run-ts.mjs bench/thin-gram.ts [rows] [widths]
 *   node tools/run-ts.mjs bench/thin-gram.ts 409600 6,16,26,151
 */
import { defaultShapesFor } from '../src/engine/autotune.js';
import { gramSlices } from '../src/engine/gpu.js';
import { openDevice } from '../src/gpu/device.js';
import { describeMatmulConfig, Matmul, thinGramChoice, thinnerConfigs, type MatmulConfig } from '../src/kernels/matmul.js';

const rows = Number(process.argv[2] ?? 409_600);
const widths = (process.argv[3] ?? '6,16,26,151').split(',').map(Number);
const gpu = await openDevice();
const shape: MatmulConfig = process.env['SHAPE'] ? (JSON.parse(process.env['SHAPE']) as MatmulConfig) : defaultShapesFor(gpu)[0]!.config;
// As the engine slices a factor's rows.
const slices = gramSlices(rows);
console.log(`${gpu.adapter.description}: ${rows} rows in ${slices} slices`);
for (const width of widths) {
  const data = new Float32Array(rows * width);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.37);
  const g = await gpu.storage(data.byteLength, 'rows', data);
  const out = await gpu.storage(slices * width * width * 4, 'slices');
  const chosen = thinGramChoice(shape, width, width, 0);
  for (const [i, config] of thinnerConfigs(shape).entries()) {
    const mm = await Matmul.create(gpu, config); // alone: no thinner version of its own
    const times: number[] = [];
    for (let run = 0; run < 4; run++) {
      const { gpuSeconds } = await gpu.timed(() => gpu.step('gram', (s) => mm.gramSliced(s, { g, out, batch: rows, ld: width, offset: 0, size: width, row0: 0, rows: width, slices })));
      times.push(gpuSeconds ?? NaN);
    }
    const best = Math.min(...times.slice(1));
    const flops = rows * width * (width + 1); // the upper triangle's FMAs, twice
    console.log(`${width} wide, ${describeMatmulConfig(config)}${i === chosen ? ' (chosen)' : ''}: ${((best / rows) * 1e9).toFixed(1)} ns per row, ${(flops / best / 1e9).toFixed(2)} GFLOP/s of the upper triangle`);
  }
  gpu.buffers.release(g);
  gpu.buffers.release(out);
}
gpu.dispose();
