/**
 * matmul.wgsl against plain float64 loops, for every entry point, on awkward
 * shapes (1, primes, one above and below the block), for several block and
 * workgroup shapes. Outputs are pre-filled with NaN so that an element the
 * kernel forgets fails.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GpuValidationError } from '../../src/gpu/errors.js';
import { entryInfo } from '../../src/gpu/reflect.js';
import { activationCode } from '../../src/kernels/activation.js';
import { DEFAULT_MATMUL_CONFIG, fastestShape, gramBlocks, Matmul, matmulConfigProblem, matmulWgsl, MATMUL_WGSL, narrowerConfig, thinGramChoice, thinnerConfigs, vectorLoads, type MatmulConfig, type MatmulShape } from '../../src/kernels/matmul.js';
import { setSubgroupRowsAnswer, subgroupRowsProblem } from '../../src/kernels/subgroup_rows.js';
import { ACTIVATIONS, ACTIVATION_NAMES } from '../../src/layers/activations.js';
import { defaultShapesFor, quickCandidates } from '../../src/engine/autotune.js';
import { Rng } from '../../src/model/random.js';
import { expectClose, f32Tolerance } from '../helpers/compare.js';
import { useGpu } from '../helpers/gpu.js';

const gpu = useGpu();

// Plain cores, and subgroup cores (these run where the adapter's subgroups have exactly wgN lanes, as lavapipe's 8).
const CONFIGS: MatmulConfig[] = [
  DEFAULT_MATMUL_CONFIG,
  { tm: 1, tn: 1, wgM: 4, wgN: 16, core: 'plain' },
  { tm: 8, tn: 8, wgM: 2, wgN: 8, core: 'plain' },
  { tm: 3, tn: 5, wgM: 7, wgN: 3, core: 'plain' },
  { tm: 8, tn: 8, wgM: 4, wgN: 8, core: 'subgroup' },
  { tm: 40, tn: 8, wgM: 1, wgN: 8, core: 'subgroup' },
  { tm: 16, tn: 3, wgM: 3, wgN: 8, core: 'subgroup' },
  { tm: 4, tn: 4, wgM: 16, wgN: 16, core: 'shared' },
  { tm: 8, tn: 4, wgM: 7, wgN: 3, core: 'shared' },
  { tm: 4, tn: 8, wgM: 3, wgN: 5, core: 'shared' },
];

/** Skips a subgroup configuration on an adapter whose subgroups do not fit it, saying so. */
function skipUnfit(config: MatmulConfig, ctx: { skip: (note?: string) => void }): void {
  const problem = matmulConfigProblem(config, gpu());
  if (problem) ctx.skip(`this adapter cannot run ${JSON.stringify(config)}: ${problem}`);
}
// (m, n, k) triples: 1, primes, around 4, 8, 32 and 64.
const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 7, 3],
  [5, 1, 2],
  [31, 33, 17],
  [65, 63, 64],
  [3, 97, 1],
];

// The subgroup core loads 16-byte-aligned operands as vec4s (vectorLoads): with this shape
// (tm a multiple of 4·wgN) both operands where the form allows. The aligned shapes have every
// operand's row stride a multiple of 4; their offsets are too (alignedPad). They run on this
// shape only, and a test below checks that they do take the vec4 loads.
const VECTOR_CONFIG: MatmulConfig = { tm: 32, tn: 8, wgM: 2, wgN: 8, core: 'subgroup' };
const ALIGNED_SHAPES: [number, number, number][] = [
  [4, 8, 1],
  [36, 44, 17],
  [100, 72, 36],
];
const isAligned = (...sizes: number[]) => sizes.every((v) => v % 4 === 0);
/** Leading garbage before an operand: a multiple of 4 for aligned shapes (their loads are vec4s), `odd` otherwise. */
const alignedPad = (aligned: boolean, odd: number) => (aligned ? 8 : odd);

async function upload(data: Float32Array, label: string): Promise<GPUBuffer> {
  return gpu().storage(Math.max(4, data.byteLength), label, data);
}
async function nanBuffer(n: number, label: string): Promise<GPUBuffer> {
  return upload(new Float32Array(n).fill(NaN), label);
}
async function read(b: GPUBuffer, n: number): Promise<Float32Array> {
  return gpu().readF32(b, n * 4);
}

function f64(n: number, rng: Rng): Float32Array {
  return rng.normals(n);
}

/** θ-like buffer: `pad` garbage floats, then W [out, in], then b [out]: the kernels must read at the offsets. */
function packTheta(w: Float32Array, bias: Float32Array, pad: number): { theta: Float32Array; layer: { weightOffset: number; biasOffset: number } } {
  const theta = new Float32Array(pad + w.length + bias.length).fill(1e30);
  theta.set(w, pad);
  theta.set(bias, pad + w.length);
  return { theta, layer: { weightOffset: pad, biasOffset: pad + w.length } };
}

/** Z = X Wᵀ + b in float64: X [m, k]; W [n, k] and b [n] read from θ at the layer's offsets. */
function forwardReference(x: Float32Array, theta: Float32Array, layer: { weightOffset: number; biasOffset: number }, m: number, n: number, k: number): Float64Array {
  const z = new Float64Array(m * n);
  for (let r = 0; r < m; r++) for (let c = 0; c < n; c++) {
    let s = theta[layer.biasOffset + c]!;
    for (let q = 0; q < k; q++) s += x[r * k + q]! * theta[layer.weightOffset + c * k + q]!;
    z[r * n + c] = s;
  }
  return z;
}

describe.each([...CONFIGS.map((c) => [c, SHAPES] as const), [VECTOR_CONFIG, ALIGNED_SHAPES] as const])('matmul %o', (config, shapes) => {
  // The activation epilogue is the same code in every shape: every activation on the default
  // shape, and on the others identity and gelu (the most intricate), which keeps the suite's
  // pipeline builds (each a compile on lavapipe) within its time.
  const activations = config === DEFAULT_MATMUL_CONFIG ? ACTIVATION_NAMES : (['identity', 'gelu'] as const);
  it.for(shapes)('linear_forward and linear_backward, m=%i n=%i k=%i, activations', async ([m, n, k], ctx) => {
    skipUnfit(config, ctx);
    const mm = await Matmul.create(gpu(), config);
    const rng = new Rng(m * 1000 + n * 10 + k);
    const x = f64(m * k, rng);
    const w = f64(n * k, rng);
    const bias = f64(n, rng);
    const { theta, layer } = packTheta(w, bias, alignedPad(isAligned(n, k), 5));
    for (const act of activations) {
      const [bx, bt, bz, by] = [await upload(x, 'x'), await upload(theta, 'θ'), await nanBuffer(m * n, 'z'), await nanBuffer(m * n, 'y')];
      await gpu().step('forward', (s) => mm.forward(s, { x: bx, theta: bt, layer, z: bz, y: by, batch: m, inputs: k, outputs: n, activation: activationCode(act) }));
      const zRef = forwardReference(x, theta, layer, m, n, k);
      const tol = { rtol: f32Tolerance(k), atol: f32Tolerance(k) * Math.sqrt(k) };
      expectClose(await read(bz, m * n), zRef, tol, `z (${act})`);
      expectClose(await read(by, m * n), zRef.map(ACTIVATIONS[act].f), { rtol: 1e-5, atol: 1e-5 * Math.sqrt(k) }, `act(z) (${act})`);

      // Backward: δ' = (δ W) ⊙ act'(z'), δ [m, n] against W [n, k]: here the sum runs over n.
      const delta = f64(m * n, rng);
      const zBelow = f64(m * k, rng);
      const [bd, bzb, bdb] = [await upload(delta, 'delta'), await upload(zBelow, 'zb'), await nanBuffer(m * k, 'db')];
      await gpu().step('backward', (s) => mm.backward(s, { delta: bd, theta: bt, layer, zBelow: bzb, deltaBelow: bdb, batch: m, inputs: k, outputs: n, activation: activationCode(act) }));
      const dRef = new Float64Array(m * k);
      for (let r = 0; r < m; r++) for (let i = 0; i < k; i++) {
        let s = 0;
        for (let o = 0; o < n; o++) s += delta[r * n + o]! * w[o * k + i]!;
        dRef[r * k + i] = s * ACTIVATIONS[act].df(zBelow[r * k + i]!);
      }
      expectClose(await read(bdb, m * k), dRef, { rtol: 1e-5, atol: f32Tolerance(n) * Math.sqrt(n) }, `δ' (${act})`);
      for (const b of [bx, bt, bz, by, bd, bzb, bdb]) gpu().buffers.release(b);
    }
  });

  it.for(shapes)('weight_gradient, squared_gradient and gram, out=%i in=%i batch=%i', async ([out, inputs, batch], ctx) => {
    skipUnfit(config, ctx);
    const mm = await Matmul.create(gpu(), config);
    const rng = new Rng(out * 7 + inputs * 3 + batch);
    const delta = f64(batch * out, rng);
    const a = f64(batch * inputs, rng);
    // Results land in a θ-shaped vector at a layer's offsets; the rest must stay NaN.
    const layer = { weightOffset: 3, biasOffset: 3 + out * inputs };
    const size = layer.biasOffset + out + 2;
    const reference = (square: boolean, scale: number) => {
      const ref = new Float64Array(size).fill(NaN);
      for (let o = 0; o < out; o++) for (let i = 0; i <= inputs; i++) {
        let s = 0;
        for (let n = 0; n < batch; n++) {
          const d = delta[n * out + o]!;
          const x = i === inputs ? 1 : a[n * inputs + i]!;
          s += square ? d * d * x * x : d * x;
        }
        ref[i === inputs ? layer.biasOffset + o : layer.weightOffset + o * inputs + i] = s * scale;
      }
      return ref;
    };
    const nanCount = (v: ArrayLike<number>) => Array.from(v).filter(Number.isNaN).length;
    const [bd, ba] = [await upload(delta, 'delta'), await upload(a, 'a')];
    const bs = await nanBuffer(size, 'S');
    await gpu().step('sq', (s) => mm.squaredGradient(s, { delta: bd, a: ba, out: bs, layer, batch, inputs, outputs: out }));
    const sRef = reference(true, 1);
    const sGot = await read(bs, size);
    expect(nanCount(sGot), 'untouched elements').toBe(5);
    // Sums of positive terms: relative error bounded by the number of terms.
    expectClose(sGot.map((v) => (Number.isNaN(v) ? 0 : v)), sRef.map((v) => (Number.isNaN(v) ? 0 : v)), { rtol: f32Tolerance(batch) }, 'S');
    const bgrad = await nanBuffer(size, 'grad');
    await gpu().step('grad', (s) => mm.weightGradient(s, { delta: bd, a: ba, out: bgrad, layer, batch, inputs, outputs: out, scale: 1 / batch }));
    const gGot = await read(bgrad, size);
    expect(nanCount(gGot), 'untouched elements').toBe(5);
    expectClose(gGot.map((v) => (Number.isNaN(v) ? 0 : v)), reference(false, 1 / batch).map((v) => (Number.isNaN(v) ? 0 : v)), { rtol: 1e-5, atol: f32Tolerance(batch) / Math.sqrt(batch) }, 'gradient');

    // The Gram block of columns [2, 2 + P) of G [batch, P + 3], P = inputs, in row tiles of every size from 1 to P.
    const p = inputs;
    const aligned = isAligned(out, inputs);
    const offset = alignedPad(aligned, 2);
    const ld = p + offset + 1 + (aligned ? 3 : 0);
    const g = f64(batch * ld, rng);
    const bg = await upload(g, 'G');
    const fRef = new Float64Array(p * p);
    for (let r = 0; r < p; r++) for (let c = 0; c < p; c++) {
      let s = 0;
      for (let n = 0; n < batch; n++) s += g[n * ld + offset + r]! * g[n * ld + offset + c]!;
      fRef[r * p + c] = s;
    }
    for (const rowsPerTile of new Set([1, Math.max(1, p - 1), p])) {
      const got = new Float64Array(p * p).fill(NaN);
      const bt = await nanBuffer(rowsPerTile * p, 'tile');
      for (let row0 = 0; row0 < p; row0 += rowsPerTile) {
        const rows = Math.min(rowsPerTile, p - row0);
        await gpu().step('gram', (s) => mm.gram(s, { g: bg, out: bt, batch, ld, offset, size: p, row0, rows }));
        got.set(await read(bt, rows * p), row0 * p);
      }
      // The upper triangle is computed; the host mirrors the rest.
      const upper = (m: ArrayLike<number>) => Array.from(m).filter((_, k) => k % p >= Math.floor(k / p));
      expectClose(upper(got), upper(fRef), { rtol: f32Tolerance(batch), atol: f32Tolerance(batch) * Math.sqrt(batch) }, `F (tiles of ${rowsPerTile} rows)`);
      gpu().buffers.release(bt);
    }
    for (const b of [bd, ba, bs, bgrad, bg]) gpu().buffers.release(b);
  });
});

// The subgroup core needs each subgroup to be one workgroup row, which WGSL does not promise:
// the host asks the device (subgroup_rows.wgsl) before it uses a workgroup shape.
describe('matmul subgroup core, the check that subgroups are workgroup rows', () => {
  it('passes where subgroups have as many lanes as a row, and fails where they span two rows; the answers are kept on disk', async (ctx) => {
    if (!gpu().device.features.has('subgroups')) ctx.skip('the adapter has no subgroups');
    const lanes = gpu().adapter.subgroupMaxSize;
    if (gpu().adapter.subgroupMinSize !== lanes) ctx.skip('subgroups of varying size');
    if (lanes < 2) ctx.skip('needs subgroups of at least 2 lanes');
    const rows: MatmulConfig = { tm: lanes, tn: 8, wgM: 2, wgN: lanes, core: 'subgroup' };
    // Half a subgroup per row: each subgroup spans two workgroup rows.
    const spanning: MatmulConfig = { tm: lanes, tn: 8, wgM: 4, wgN: lanes / 2, core: 'subgroup' };
    const forget = () => [rows, spanning].forEach((c) => setSubgroupRowsAnswer(gpu(), c.wgM, c.wgN, undefined, true));
    // An empty cache directory: the device is asked.
    const dir = mkdtempSync(join(tmpdir(), 'fisher-subgroup-rows-'));
    const before = process.env['FISHER_GPU_CACHE_DIR'];
    process.env['FISHER_GPU_CACHE_DIR'] = dir;
    try {
      forget();
      expect(await subgroupRowsProblem(gpu(), rows.wgM, rows.wgN)).toBeUndefined();
      const spans = /does not form its subgroups as the rows of a 4×\d+ workgroup/;
      expect(await subgroupRowsProblem(gpu(), spanning.wgM, spanning.wgN)).toMatch(spans);
      // Both answers were written, by adapter and shape; a new process reads them instead of asking
      // (what the file says is what it gets: doctored here, to tell it from the device's answer).
      const file = join(dir, 'subgroup-rows.json');
      const kept = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { rows: boolean; problem?: string }>;
      const keys = Object.keys(kept);
      expect(keys.map((k) => k.slice(k.lastIndexOf(' | ') + 3)).sort()).toEqual([`2x${lanes}`, `4x${lanes / 2}`]);
      expect(keys.every((k) => k.startsWith(`${gpu().adapter.description} | `))).toBe(true);
      const rowsKey = keys.find((k) => k.endsWith(` | 2x${lanes}`))!;
      expect(kept[rowsKey]).toEqual({ rows: true });
      writeFileSync(file, JSON.stringify({ ...kept, [rowsKey]: { rows: false, problem: 'doctored' } }));
      forget();
      expect(await subgroupRowsProblem(gpu(), rows.wgM, rows.wgN)).toBe('doctored');
      expect(await subgroupRowsProblem(gpu(), spanning.wgM, spanning.wgN)).toMatch(spans);
      // A file that is not answers: the device is asked again.
      writeFileSync(file, '[1, 2');
      forget();
      expect(await subgroupRowsProblem(gpu(), rows.wgM, rows.wgN)).toBeUndefined();
    } finally {
      if (before === undefined) delete process.env['FISHER_GPU_CACHE_DIR'];
      else process.env['FISHER_GPU_CACHE_DIR'] = before;
      forget();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves a shape that fails it out of a list, uses the default where none is left, and refuses it alone', async (ctx) => {
    if (!gpu().device.features.has('subgroups')) ctx.skip('the adapter has no subgroups');
    const lanes = gpu().adapter.subgroupMaxSize;
    const tall: MatmulConfig = { tm: 4 * lanes, tn: 8, wgM: 2, wgN: lanes, core: 'subgroup' };
    if (gpu().adapter.subgroupMinSize !== lanes) ctx.skip('subgroups of varying size');
    const small: MatmulConfig = { tm: 4, tn: 4, wgM: 8, wgN: 8, core: 'plain' };
    // As if the device had answered otherwise (lavapipe forms its subgroups as rows).
    setSubgroupRowsAnswer(gpu(), tall.wgM, tall.wgN, 'subgroups across rows');
    try {
      expect((await Matmul.create(gpu(), [{ config: tall, gflops: 30 }, { config: small, gflops: 10 }])).shapes.map((s) => s.config)).toEqual([small]);
      expect((await Matmul.create(gpu(), [{ config: tall, gflops: 30 }])).shapes.map((s) => s.config)).toEqual([DEFAULT_MATMUL_CONFIG]);
      await expect(Matmul.create(gpu(), tall)).rejects.toThrow(/subgroups across rows/);
    } finally {
      setSubgroupRowsAnswer(gpu(), tall.wgM, tall.wgN, undefined, true);
    }
    expect((await Matmul.create(gpu(), [{ config: tall, gflops: 30 }])).shapes.map((s) => s.config)).toEqual([tall]);
  });
});

// The dense products of the device Cholesky, at offsets and row strides inside larger buffers.
/**
 * gram_sliced of G's columns [offset + row0, offset + size) against [offset, offset + size), over
 * `batch` rows of stride ld in `slices` slices: the slices' upper triangles must sum to the Gram,
 * and the element before them stay NaN.
 */
async function checkGramSliced(mm: Matmul, p: { slices: number; batch: number; ld: number; offset: number; size: number; row0: number }): Promise<void> {
  const { slices, batch, ld, offset, size, row0 } = p;
  const rows = size - row0;
  const g = f64(batch * ld, new Rng(slices * 100 + batch + size));
  const want: number[] = [];
  const got: number[] = [];
  const [bg, bf] = [await upload(g, 'G'), await nanBuffer(5 + slices * rows * size, 'F')];
  await gpu().step('gram_sliced', (s) => mm.gramSliced(s, { g: bg, out: bf, batch, ld, offset, size, row0, rows, at: 5, slices }));
  const f = await read(bf, 5 + slices * rows * size);
  for (let r = 0; r < rows; r++) {
    for (let c = row0 + r; c < size; c++) {
      let sum = 0;
      for (let q = 0; q < batch; q++) sum += g[q * ld + offset + row0 + r]! * g[q * ld + offset + c]!;
      want.push(sum);
      let parts = 0;
      for (let z = 0; z < slices; z++) parts += f[5 + z * rows * size + r * size + c]!;
      got.push(parts);
    }
  }
  expectClose(got, want, { rtol: f32Tolerance(batch), atol: f32Tolerance(batch) }, `${slices} slices`);
  expect(Number.isNaN(f[4]!)).toBe(true);
  gpu().buffers.release(bg);
  gpu().buffers.release(bf);
}

// A plain core, an awkward one and a subgroup core (each product compiles per shape: a few suffice).
// gram_sliced cuts the rows into slices, one per z of the dispatch; the slices' upper triangles
// sum to the Gram. More slices than rows leave some empty (all zero); the rows sit at a column
// offset, in a wider buffer, and the tile starts at row0. One shape per core: each new pipeline
// compiles for seconds on a fresh machine's lavapipe.
describe.each([CONFIGS[3]!, CONFIGS[4]!, CONFIGS[8]!])('gram_sliced %o', (config) => {
  it.for([
    [1, 3],
    [4, 37],
    [5, 23],
    [9, 4],
  ] as const)('%i slices of %i rows', async ([slices, batch], ctx) => {
    skipUnfit(config, ctx);
    await checkGramSliced(await Matmul.create(gpu(), config), { slices, batch, ld: 29, offset: 3, size: 23, row0: 2 });
  });
});

// A Gram runs on a thinner version of its shape where the subgroup core's cost model predicts it
// faster (thinGramChoice): K-FAC's factors of a convolution are 6 to 30 wide over 10⁶ rows.
describe('thin Grams', () => {
  const tall: MatmulConfig = { tm: 32, tn: 8, wgM: 4, wgN: 8, core: 'subgroup' };
  const name = (c: MatmulConfig) => `${c.tm}x${c.tn}`;

  it('halve the block down the ladder the core allows', () => {
    expect(thinnerConfigs(tall).map(name)).toEqual(['32x8', '32x4', '16x2', '8x1']);
    expect(thinnerConfigs({ ...tall, tm: 16, tn: 3 }).map(name)).toEqual(['16x3']);
    expect(thinnerConfigs({ ...tall, tm: 40 }).map(name)).toEqual(['40x8', '40x4']);
    expect(thinnerConfigs(DEFAULT_MATMUL_CONFIG).map(name)).toEqual(['8x8', '8x4', '4x2', '2x1']);
  });

  it('count the blocks the kernel computes: none past the last row, none wholly below the diagonal', () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 300; trial++) {
      const c = thinnerConfigs(tall)[trial % 4]!;
      const [m, n] = [1 + Math.floor(rng.uniform() * 200), 1 + Math.floor(rng.uniform() * 200)];
      const shift = Math.floor(rng.uniform() * 50);
      // matmul.wgsl's gram, lane by lane: a subgroup's block is skipped when every lane's is.
      let want = 0;
      for (let r0 = 0; r0 < Math.ceil(m / (c.wgM * c.tm)) * c.wgM * c.tm; r0 += c.tm) {
        for (let c0 = 0; c0 < Math.ceil(n / (c.wgN * c.tn)) * c.wgN * c.tn; c0 += c.wgN * c.tn) {
          const lanes = Array.from({ length: c.wgN }, (_, l) => c0 + l * c.tn);
          if (!(r0 >= m || lanes.every((y) => shift + r0 >= y + c.tn))) want++;
        }
      }
      expect(gramBlocks(c, m, n, shift), `${name(c)} m=${m} n=${n} shift=${shift}`).toBe(want);
    }
  });

  it('take the thinner block where it is predicted a quarter faster, and the tuned one for wide Grams', () => {
    const chosen = (w: number, shift = 0) => name(thinnerConfigs(tall)[thinGramChoice(tall, w, w + shift, shift)]!);
    expect([6, 16, 26, 151, 401, 2410].map((w) => chosen(w))).toEqual(['8x1', '16x2', '32x4', '32x8', '32x8', '32x8']);
    // A row tile of a wide Gram: mostly above the diagonal.
    expect(chosen(6, 200)).toBe('8x1');
    // Cores without a cost model keep their shape.
    const shared: MatmulConfig = { tm: 4, tn: 4, wgM: 16, wgN: 16, core: 'shared' };
    expect(thinGramChoice(shared, 6, 6, 0)).toBe(0);
  });

  // The lavapipe kind's shape as a list (one configuration alone is one shape for every product),
  // on Grams 6, 16 and 26 wide (8 × 1, 16 × 2 and 32 × 4 blocks).
  it.for([6, 16, 26] as const)('gram_sliced %i wide on the thinner blocks', async (size, ctx) => {
    skipUnfit(tall, ctx);
    const mm = await Matmul.create(gpu(), [{ config: tall, gflops: 1 }]);
    await checkGramSliced(mm, { slices: 3, batch: 70, ld: size + 3, offset: 2, size, row0: 0 });
    await checkGramSliced(mm, { slices: 2, batch: 9, ld: size + 3, offset: 2, size, row0: 1 });
  });
});

// A product whose columns fit half its tiles runs on narrower ones (narrowerConfig): the same
// workgroups, half the columns each, while they still cover n.
describe('narrow products', () => {
  const tall: MatmulConfig = { tm: 32, tn: 8, wgM: 4, wgN: 8, core: 'subgroup' };

  it('halve tn while n fits half the tile, not below 4 where B loads as vec4s', () => {
    const tn = (n: number, vecB = false) => narrowerConfig(tall, n, vecB).tn;
    expect([1, 6, 8, 9, 10, 16, 17, 26, 32, 33, 64, 500].map((n) => tn(n))).toEqual([1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8]);
    expect(tn(6, true)).toBe(4);
    // The shared core holds tiles in vec4s: tn stays a multiple of 4.
    expect(narrowerConfig({ tm: 4, tn: 8, wgM: 16, wgN: 16, core: 'shared' }, 6, false).tn).toBe(4);
  });

  // Layers 40 → 6 (the forward narrowed) and 6 → 40 (the backward and both reductions narrowed),
  // over 2,048 rows, from the lavapipe kind's shapes as a list.
  it.for([
    [40, 6],
    [6, 40],
  ] as const)('forward, backward and the reductions of a %i → %i layer against float64', async ([inputs, outputs], ctx) => {
    skipUnfit(tall, ctx);
    const mm = await Matmul.create(gpu(), [{ config: tall, gflops: 1 }]);
    const batch = 2048;
    const rng = new Rng(inputs * 100 + outputs);
    const x = f64(batch * inputs, rng);
    const { theta, layer } = packTheta(f64(outputs * inputs, rng), f64(outputs, rng), 5);
    const delta = f64(batch * outputs, rng);
    const zBelow = f64(batch * inputs, rng);
    const [bx, bt, bd, bzb] = [await upload(x, 'x'), await upload(theta, 'θ'), await upload(delta, 'δ'), await upload(zBelow, 'z below')];
    const [bz, by, bdb] = [await nanBuffer(batch * outputs, 'z'), await nanBuffer(batch * outputs, 'y'), await nanBuffer(batch * inputs, 'δ below')];
    const size = layer.biasOffset + outputs;
    const [bs, bg] = [await nanBuffer(size, 'S'), await nanBuffer(size, 'grad')];
    const identity = activationCode('identity');
    await gpu().step('narrow', (s) => {
      mm.forward(s, { x: bx, theta: bt, layer, z: bz, y: by, batch, inputs, outputs, activation: identity });
      mm.backward(s, { delta: bd, theta: bt, layer, zBelow: bzb, deltaBelow: bdb, batch, inputs, outputs, activation: identity });
      mm.squaredGradient(s, { delta: bd, a: bx, out: bs, layer, batch, inputs, outputs });
      mm.weightGradient(s, { delta: bd, a: bx, out: bg, layer, batch, inputs, outputs, scale: 1 });
    });
    const tol = (k: number) => ({ rtol: f32Tolerance(k), atol: f32Tolerance(k) * Math.sqrt(k) });
    expectClose(await read(bz, batch * outputs), forwardReference(x, theta, layer, batch, outputs, inputs), tol(inputs), 'z');
    const dRef = new Float64Array(batch * inputs);
    for (let r = 0; r < batch; r++) for (let i = 0; i < inputs; i++) {
      for (let o = 0; o < outputs; o++) dRef[r * inputs + i]! += delta[r * outputs + o]! * theta[layer.weightOffset + o * inputs + i]!;
    }
    expectClose(await read(bdb, batch * inputs), dRef, tol(outputs), "δ'");
    const sums = (square: boolean) => {
      const ref = new Float64Array(size - layer.weightOffset);
      for (let r = 0; r < batch; r++) for (let o = 0; o < outputs; o++) {
        const d = delta[r * outputs + o]!;
        for (let i = 0; i <= inputs; i++) {
          const v = d * (i === inputs ? 1 : x[r * inputs + i]!);
          ref[i === inputs ? layer.biasOffset - layer.weightOffset + o : o * inputs + i]! += square ? v * v : v;
        }
      }
      return ref;
    };
    expectClose((await read(bs, size)).subarray(layer.weightOffset), sums(true), { rtol: f32Tolerance(batch) }, 'S');
    expectClose((await read(bg, size)).subarray(layer.weightOffset), sums(false), tol(batch), 'gradient');
    for (const b of [bx, bt, bd, bzb, bz, by, bdb, bs, bg]) gpu().buffers.release(b);
  });
});

describe.each([CONFIGS[0]!, CONFIGS[3]!, CONFIGS[4]!, CONFIGS[8]!, VECTOR_CONFIG])('product and upper_update %o', (config) => {
  it.for([
    [1, 1, 1],
    [7, 5, 3],
    [33, 31, 9],
    [70, 65, 64],
  ] as const)('m=%i n=%i k=%i', async ([m, n, k], ctx) => {
    skipUnfit(config, ctx);
    const mm = await Matmul.create(gpu(), config);
    const rng = new Rng(m * 1000 + n * 10 + k);
    // A [m, k] at offset 3 with row stride k + 2; B [k, n] at offset 1 with stride n + 1; C with stride ldc > m, n.
    // With VECTOR_CONFIG the operands are 16-byte aligned, so that its vec4 loads run.
    const up4 = (v: number) => Math.ceil(v / 4) * 4;
    const aligned = config === VECTOR_CONFIG;
    const [lda, ldb, ldc] = aligned ? [up4(k) + 4, up4(n) + 4, Math.max(m, n) + 3] : [k + 2, n + 1, Math.max(m, n) + 3];
    const [aOffset, bOffset, cOffset] = aligned ? [4, 8, 2] : [3, 1, 2];
    const a = f64(aOffset + m * lda, rng);
    const b = f64(bOffset + k * ldb, rng);
    const c0 = f64(cOffset + Math.max(m, n) * ldc, rng);
    const [ba, bb] = [await upload(a, 'a'), await upload(b, 'b')];
    const [bc, bu] = [await upload(c0, 'c'), await upload(c0, 'c update')];
    // upper_update needs square C: n × n, C −= Bᵀ B with B [k, n] (the Cholesky's U12ᵀ U12).
    await gpu().step('dense products', (s) => {
      mm.product(s, { a: ba, aOffset, lda, b: bb, bOffset, ldb, c: bc, cOffset, ldc, m, n, k });
      mm.upperUpdate(s, { a: bb, aOffset: bOffset, lda: ldb, b: bb, bOffset, ldb, c: bu, cOffset, ldc, m: n, n, k });
    });
    const tol = { rtol: f32Tolerance(k), atol: f32Tolerance(k) * Math.sqrt(k) };
    const [c, u] = [await read(bc, c0.length), await read(bu, c0.length)];
    const [got, want, gotU, wantU] = [[], [], [], []] as [number[], number[], number[], number[]];
    for (let i = 0; i < Math.max(m, n); i++) {
      for (let j = 0; j < ldc; j++) {
        const at = cOffset + i * ldc + j;
        // Inside C: the product; outside it: untouched.
        let ab = 0;
        for (let q = 0; i < m && j < n && q < k; q++) ab += a[aOffset + i * lda + q]! * b[bOffset + q * ldb + j]!;
        got.push(c[at]!);
        want.push(i < m && j < n ? ab : c0[at]!);
        // upper_update: C − BᵀB on and above the diagonal; below it not read; outside the square untouched.
        if (i < n && j < n && j < i) continue;
        let btb = 0;
        for (let q = 0; i < n && j < n && q < k; q++) btb += b[bOffset + q * ldb + i]! * b[bOffset + q * ldb + j]!;
        gotU.push(u[at]!);
        wantU.push(i < n && j < n ? c0[at]! - btb : c0[at]!);
      }
    }
    expectClose(got, want, tol, 'product');
    expectClose(gotU, wantU, tol, 'upper_update');
    expect(Array.from(c.subarray(0, cOffset))).toEqual(Array.from(c0.subarray(0, cOffset)));
    for (const buf of [ba, bb, bc, bu]) gpu().buffers.release(buf);
  });
});

describe('every shape fisher bench --tune may choose', () => {
  // Two pipelines for each of some 36 shapes: on lavapipe with a cold shader cache (a fresh
  // machine) building them alone takes about two minutes.
  it('computes the forward pass and the Gram matrix (the two block-product orientations) as float64 does', { timeout: 360_000 }, async () => {
    const [m, n, k] = [37, 19, 23];
    const rng = new Rng(77);
    const x = f64(m * k, rng);
    const theta = f64(n * (k + 1), rng);
    const layer = { weightOffset: 0, biasOffset: n * k };
    const zRef = forwardReference(x, theta, layer, m, n, k);
    // Gram of x as G [m, k] (P = k); the upper triangle.
    const gRef: number[] = [];
    for (let r = 0; r < k; r++) for (let c = r; c < k; c++) {
      let s = 0;
      for (let q = 0; q < m; q++) s += x[q * k + r]! * x[q * k + c]!;
      gRef.push(s);
    }
    const [bx, bt] = [await upload(x, 'x'), await upload(theta, 'θ')];
    // What `fisher bench --tune` scores, what the first use searches, and the kind's defaults.
    const shapes = [...(await import('../../src/bench/tune.js')).candidates(gpu()), ...quickCandidates(gpu()), ...defaultShapesFor(gpu()).map((s) => s.config)];
    const unique = [...new Map(shapes.map((c) => [JSON.stringify(c), c])).values()];
    expect(unique.length).toBeGreaterThan(4);
    for (const config of unique) {
      const mm = await Matmul.create(gpu(), config);
      const [bz, by, bf] = [await nanBuffer(m * n, 'z'), await nanBuffer(m * n, 'y'), await nanBuffer(k * k, 'F')];
      await gpu().step('candidate', (s) => {
        mm.forward(s, { x: bx, theta: bt, layer, z: bz, y: by, batch: m, inputs: k, outputs: n, activation: activationCode('identity') });
        mm.gram(s, { g: bx, out: bf, batch: m, ld: k, offset: 0, size: k, row0: 0, rows: k });
      });
      const tol = { rtol: f32Tolerance(k), atol: f32Tolerance(k) * Math.sqrt(k) };
      expectClose(await read(bz, m * n), zRef, tol, `forward with ${JSON.stringify(config)}`);
      const f = await read(bf, k * k);
      expectClose(Array.from(f).filter((_, i) => i % k >= Math.floor(i / k)), gRef, tol, `gram with ${JSON.stringify(config)}`);
      for (const b of [bz, by, bf]) gpu().buffers.release(b);
    }
    gpu().buffers.release(bx);
    gpu().buffers.release(bt);
  });
});

describe('matmul wrapper', () => {
  it('binds exactly the buffers each entry point declares (read from the WGSL)', async () => {
    expect((await entryInfo(MATMUL_WGSL, 'linear_forward')).bindings.map((b) => b.name)).toEqual(['dims', 'a', 'b', 'c', 'c_act']);
    expect((await entryInfo(MATMUL_WGSL, 'gram')).bindings.map((b) => [b.name, b.kind])).toEqual([
      ['dims', 'uniform'],
      ['a', 'read-only-storage'],
      ['b', 'read-only-storage'],
      ['c', 'storage'],
    ]);
  });

  it('the subgroup core also binds a and b as vec4s (a4, b4), the others do not', async () => {
    expect((await entryInfo(matmulWgsl('subgroup'), 'gram')).bindings.map((b) => b.name)).toEqual(['dims', 'a', 'b', 'c', 'a4', 'b4']);
    expect((await entryInfo(matmulWgsl('shared'), 'gram')).bindings.map((b) => b.name)).toEqual(['dims', 'a', 'b', 'c']);
  });

  it('loads an operand as vec4s only where the core, the entry, the block and its alignment allow', () => {
    // Only the sizes matter here: stand-ins for buffers.
    const at = (offset: number, ld: number, size = 4096): { buffer: GPUBuffer; offset: number; ld: number } => ({ buffer: { size } as GPUBuffer, offset, ld });
    const ok = at(8, 36);
    expect(vectorLoads(VECTOR_CONFIG, 'squared_gradient', ok, ok)).toEqual({ a: true, b: true });
    expect(vectorLoads(VECTOR_CONFIG, 'weight_gradient', ok, ok)).toEqual({ a: true, b: true });
    expect(vectorLoads(VECTOR_CONFIG, 'gram', ok, ok)).toEqual({ a: true, b: true });
    expect(vectorLoads(VECTOR_CONFIG, 'upper_update', ok, ok)).toEqual({ a: true, b: true });
    // A read along k (X [m, k]), or W read as [n, k]: no consecutive elements to take four at a time.
    expect(vectorLoads(VECTOR_CONFIG, 'linear_backward', ok, ok)).toEqual({ a: false, b: true });
    expect(vectorLoads(VECTOR_CONFIG, 'product', ok, ok)).toEqual({ a: false, b: true });
    expect(vectorLoads(VECTOR_CONFIG, 'linear_forward', ok, ok)).toEqual({ a: false, b: false });
    expect(vectorLoads(VECTOR_CONFIG, 'conv_forward', ok, ok)).toEqual({ a: false, b: false });
    // Misaligned offset, stride or buffer size.
    expect(vectorLoads(VECTOR_CONFIG, 'squared_gradient', at(2, 36), at(8, 10))).toEqual({ a: false, b: false });
    expect(vectorLoads(VECTOR_CONFIG, 'squared_gradient', at(8, 36, 4100), ok)).toEqual({ a: false, b: true });
    // Blocks: A needs tm a multiple of 4·wgN, B tn a multiple of 4; other cores load scalars.
    expect(vectorLoads({ ...VECTOR_CONFIG, tm: 8 }, 'squared_gradient', ok, ok)).toEqual({ a: false, b: true });
    expect(vectorLoads({ ...VECTOR_CONFIG, tn: 6 }, 'squared_gradient', ok, ok)).toEqual({ a: true, b: false });
    expect(vectorLoads({ ...VECTOR_CONFIG, core: 'plain' }, 'squared_gradient', ok, ok)).toEqual({ a: false, b: false });
    expect(vectorLoads({ ...VECTOR_CONFIG, core: 'shared' }, 'squared_gradient', ok, ok)).toEqual({ a: false, b: false });
  });

  it('the aligned shapes of the parity tests take the vec4 loads', () => {
    const at = (ld: number, floats: number) => ({ buffer: { size: Math.ceil((floats * 4) / 16) * 16 } as GPUBuffer, offset: 0, ld });
    for (const [m, n, k] of ALIGNED_SHAPES) {
      // squared_gradient and weight_gradient: δ [batch = k, out = m], a [k, in = n].
      expect(vectorLoads(VECTOR_CONFIG, 'squared_gradient', at(m, k * m), at(n, k * n))).toEqual({ a: true, b: true });
      // gram: G [k, n + 12] from column 8.
      expect(vectorLoads(VECTOR_CONFIG, 'gram', { ...at(n + 12, k * (n + 12)), offset: 8 }, { ...at(n + 12, k * (n + 12)), offset: 8 })).toEqual({ a: true, b: true });
      // linear_backward, where the inputs (k) are a multiple of 4: W [n, k] at the aligned pad.
      if (k % 4 === 0) expect(vectorLoads(VECTOR_CONFIG, 'linear_backward', at(n, m * n), { ...at(k, 8 + n * k + n), offset: alignedPad(true, 5) })).toEqual({ a: false, b: true });
    }
  });

  it('rejects blocks the core cannot hold', async () => {
    await expect(Matmul.create(gpu(), { tm: 9, tn: 1, wgM: 1, wgN: 1, core: 'plain' })).rejects.toThrow(/at most 8×8/);
    await expect(Matmul.create(gpu(), { tm: 12, tn: 1, wgM: 1, wgN: 8, core: 'subgroup' })).rejects.toThrow(/multiple of wgN/);
    await expect(Matmul.create(gpu(), { tm: 3, tn: 4, wgM: 8, wgN: 8, core: 'shared' })).rejects.toThrow(/multiples of 4, got 3×4/);
  });

  it('a buffer of the wrong usage is a validation error naming the step, kernel and sizes', async () => {
    const mm = await Matmul.create(gpu(), DEFAULT_MATMUL_CONFIG);
    const [bd, ba] = [await upload(new Float32Array(6), 'd'), await upload(new Float32Array(6), 'a')];
    // A buffer made without STORAGE usage, bound as the output: the bind group is invalid.
    const tiny = gpu().device.createBuffer({ size: 4, usage: GPUBufferUsage.UNIFORM });
    const layer = { weightOffset: 0, biasOffset: 6 };
    await expect(
      gpu().step('bad step', (s) => mm.squaredGradient(s, { delta: bd, a: ba, out: tiny, layer, batch: 2, inputs: 2, outputs: 3 })),
    ).rejects.toThrow(GpuValidationError);
    await expect(gpu().step('bad step', (s) => mm.squaredGradient(s, { delta: bd, a: ba, out: tiny, layer, batch: 2, inputs: 2, outputs: 3 }))).rejects.toThrow(
      /bad step \[matmul.squared_gradient \{"m":3,"n":3,"k":2/,
    );
    tiny.destroy();
  });
});

describe('choosing a shape per product', () => {
  const tall: MatmulShape = { config: { tm: 32, tn: 8, wgM: 8, wgN: 8, core: 'subgroup' }, gflops: 35 };
  const small: MatmulShape = { config: DEFAULT_MATMUL_CONFIG, gflops: 14 };

  it('predicts each shape by the padded work over its rate', () => {
    // 4096 × 256: no padding for either tile, the faster rate wins.
    expect(fastestShape([tall, small], 4096, 256)).toBe(0);
    // A training batch of 64 rows: the 256-row tile computes 4× padding (4/35 > 1/14).
    expect(fastestShape([tall, small], 64, 256)).toBe(1);
    // 100 rows: 2.56× padding at 35 against 1.28× at 14: still the tall tile.
    expect(fastestShape([tall, small], 100, 785)).toBe(0);
    expect(fastestShape([small], 1, 1)).toBe(0);
  });

  it('gives the same products whichever shape each takes', async (ctx) => {
    skipUnfit(tall.config, ctx);
    // Batches of 64 take the small shape and 300 the tall one: both against float64.
    for (const m of [64, 300]) {
      const [n, k] = [24, 19];
      const rng = new Rng(m);
      const x = f64(m * k, rng);
      const theta = f64(n * (k + 1), rng);
      const layer = { weightOffset: 0, biasOffset: n * k };
      const zRef = forwardReference(x, theta, layer, m, n, k);
      const mm = await Matmul.create(gpu(), [tall, small]);
      expect(mm.config).toEqual(tall.config);
      const [bx, bt, bz, by] = [await upload(x, 'x'), await upload(theta, 'θ'), await nanBuffer(m * n, 'z'), await nanBuffer(m * n, 'y')];
      await gpu().step('two shapes', (s) => mm.forward(s, { x: bx, theta: bt, layer, z: bz, y: by, batch: m, inputs: k, outputs: n, activation: activationCode('identity') }));
      expectClose(await read(bz, m * n), zRef, { rtol: f32Tolerance(k), atol: f32Tolerance(k) * Math.sqrt(k) }, `forward of ${m} rows`);
      for (const b of [bx, bt, bz, by]) gpu().buffers.release(b);
    }
  });
});
