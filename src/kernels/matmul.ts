/**
 * shaders/matmul.wgsl: the blocked products of the forward pass, the
 * backward pass, the squared-gradient reduction and the Gram matrix. This
 * wrapper owns the dispatch arithmetic and the shape rules of each product;
 * see the WGSL for the layouts.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { u32Constant } from '../gpu/reflect.js';
import { trace } from '../gpu/trace.js';
import { subgroupRowsProblem } from './subgroup_rows.js';
import { ACTIVATION_WGSL } from './activation.js';
import type { ConvGeometry } from './conv2d.js';
import { groups } from './dispatch.js';
import plainBlock from '../../shaders/matmul_block.wgsl';
import sharedBlock from '../../shaders/matmul_block_shared.wgsl';
import subgroupBlock from '../../shaders/matmul_block_subgroup.wgsl';
import entries from '../../shaders/matmul.wgsl';

/**
 * The block cores matmul.wgsl is composed with: how an invocation's TM × TN
 * block of C gets its operands. `plain`: each invocation loads its own
 * (shaped for CPU-SIMD drivers such as lavapipe); `subgroup`: the lanes of
 * a subgroup share A's rows by shuffles; `shared`: the workgroup loads
 * tiles of A and B into workgroup memory together (shaped for discrete
 * GPUs). A core is its WGSL file and one entry here.
 */
export type MatmulCore = 'plain' | 'subgroup' | 'shared';

interface CoreSpec {
  source: string;
  /** The pipeline family (names its kernels in errors and traces). */
  family: string;
  /** Why a configuration cannot run with this core (beyond the block limits every core has). */
  problem?: (config: MatmulConfig, gpu?: GpuDevice) => string | undefined;
  /** What only a dispatch on the device can tell: why the configuration cannot run there. */
  deviceProblem?: (config: MatmulConfig, gpu: GpuDevice) => Promise<string | undefined>;
  /** Whether the core reads aligned operands as vec4s (the VEC_A and VEC_B overrides, the a4 and b4 bindings). */
  vectorLoads?: boolean;
  /**
   * The relative time of one step of k of one subgroup's block (tm rows by
   * wgN·tn columns), where it was measured: a Gram then runs on the thinner
   * version of its shape that this predicts fastest (thinGramChoice).
   */
  stepCost?: (config: MatmulConfig) => number;
}

/**
 * A lane's scalar load in vec4 FMAs, on lavapipe: each is a loop over the
 * lanes with a mask test and a bounds test (bench/RESULTS.md). Fitted to
 * thin Grams' times per row of 8 × 1, 16 × 2, 32 × 4, 8 × 8 and 32 × 8
 * blocks, within ±20%.
 */
const SUBGROUP_LOAD_COST = 4;

const CORES: Record<MatmulCore, CoreSpec> = {
  plain: { source: plainBlock, family: 'matmul' },
  subgroup: {
    source: subgroupBlock,
    family: 'matmul/subgroups',
    problem: (config, gpu) => {
      if (config.tm % config.wgN !== 0) return `with subgroups, tm (${config.tm}) must be a multiple of wgN (${config.wgN})`;
      if (!gpu) return undefined;
      if (!gpu.device.features.has('subgroups')) return 'the device has no subgroups feature';
      const { subgroupMinSize: min, subgroupMaxSize: max } = gpu.adapter;
      if (min !== config.wgN || max !== config.wgN) return `subgroups of ${min}…${max} lanes, the core needs exactly wgN = ${config.wgN}`;
      return undefined;
    },
    deviceProblem: (config, gpu) => subgroupRowsProblem(gpu, config.wgM, config.wgN),
    vectorLoads: true,
    // Per row of the block one vec4 FMA, two past 4 columns (its accumulators are two vec4s a row);
    // per lane tm / wgN loads of A (shared by shuffles) and tn of B.
    stepCost: (c) => c.tm * (c.tn > 4 ? 2 : 1) + SUBGROUP_LOAD_COST * (c.tm / c.wgN + c.tn),
  },
  shared: {
    source: sharedBlock,
    family: 'matmul/shared',
    problem: (config, gpu) => {
      if (config.tm % 4 !== 0 || config.tn % 4 !== 0) return `with workgroup-shared tiles (held in vec4s), tm and tn must be multiples of 4, got ${config.tm}×${config.tn}`;
      const bytes = sharedTileBytes(config);
      if (gpu && bytes > gpu.limits.maxComputeWorkgroupStorageSize) return `its tiles take ${bytes} bytes of workgroup memory, more than the device's ${gpu.limits.maxComputeWorkgroupStorageSize}`;
      return undefined;
    },
  },
};

export const MATMUL_CORES = Object.keys(CORES) as MatmulCore[];

/** Workgroup memory of the shared core's tiles: A [wgM·tm, TILE_K] and B [TILE_K, wgN·tn], float32, and a flag. */
export function sharedTileBytes(config: MatmulConfig): number {
  return 4 * u32Constant(sharedBlock, 'TILE_K') * (config.wgM * config.tm + config.wgN * config.tn) + 4;
}

/** The shape choices of the blocked kernel (its overrides, and which block core). */
export interface MatmulConfig {
  /** Rows and columns of C per invocation. */
  tm: number;
  tn: number;
  /** Invocations per workgroup along m and n. */
  wgM: number;
  wgN: number;
  core: MatmulCore;
}

/**
 * A configuration as stored (tuning caches and bench results before the
 * `core` field said `subgroups: true | false`), or undefined where it is
 * not one.
 */
export function readMatmulConfig(raw: unknown): MatmulConfig | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined;
  const r = raw as Record<string, unknown>;
  const [tm, tn, wgM, wgN] = [r['tm'], r['tn'], r['wgM'], r['wgN']];
  if (![tm, tn, wgM, wgN].every((x) => typeof x === 'number')) return undefined;
  const core = typeof r['core'] === 'string' ? r['core'] : r['subgroups'] === true ? 'subgroup' : 'plain';
  if (!(core in CORES)) return undefined;
  return { tm: tm as number, tn: tn as number, wgM: wgM as number, wgN: wgN as number, core: core as MatmulCore };
}

/** Whether two configurations are the same shape. */
export function sameMatmulConfig(a: MatmulConfig, b: MatmulConfig): boolean {
  return a.tm === b.tm && a.tn === b.tn && a.wgM === b.wgM && a.wgN === b.wgN && a.core === b.core;
}

/** A configuration in words: blocks, workgroup, core. */
export function describeMatmulConfig(c: MatmulConfig): string {
  return `${c.tm}×${c.tn} blocks, workgroup ${c.wgM}×${c.wgN}${c.core === 'subgroup' ? ', subgroup-shared rows' : c.core === 'shared' ? ', workgroup-shared tiles' : ''}`;
}

// Measured on lavapipe: 8×8 blocks do 1.6–1.8× the FLOP/s of 4×4. Adapters never tuned get defaults by their kind (tuning.ts).
export const DEFAULT_MATMUL_CONFIG: MatmulConfig = { tm: 8, tn: 8, wgM: 8, wgN: 8, core: 'plain' };

/** A configuration with the rate it reached in tuning: what the choice between shapes weighs. */
export interface MatmulShape {
  config: MatmulConfig;
  gflops: number;
}

/** The part of C one workgroup computes: rows × columns. */
export function tileOf(c: MatmulConfig): { rows: number; cols: number } {
  return { rows: c.tm * c.wgM, cols: c.tn * c.wgN };
}

/** One configuration as the only shape (its rate is then irrelevant), or the shapes as given. */
export function asShapes(shapes: MatmulConfig | readonly MatmulShape[]): readonly MatmulShape[] {
  return Array.isArray(shapes) ? (shapes as readonly MatmulShape[]) : [{ config: shapes as MatmulConfig, gflops: 1 }];
}

/**
 * Of several shapes, the index of the one predicted fastest for C [m, n]:
 * the work it actually does, with m and n rounded up to its workgroup's
 * tile, divided by its measured rate. A tall tuned tile wins on the big
 * products; a small one wins on a training batch of 64, where the tall one
 * would compute mostly padding.
 */
export function fastestShape(shapes: readonly MatmulShape[], m: number, n: number): number {
  let best = 0;
  let bestTime = Infinity;
  shapes.forEach(({ config, gflops }, i) => {
    const { rows, cols } = tileOf(config);
    const time = (Math.ceil(m / rows) * rows * Math.ceil(n / cols) * cols) / gflops;
    if (time < bestTime) [best, bestTime] = [i, time];
  });
  return best;
}

/**
 * The blocks of tm rows by wgN·tn columns (a subgroup's, with the subgroup
 * core) that `gram` computes of C [m, n] whose row r is row r + shift of F:
 * those past C's last row or wholly below F's diagonal are skipped.
 */
export function gramBlocks(c: MatmulConfig, m: number, n: number, shift: number): number {
  const cols = c.wgN * c.tn;
  let count = 0;
  for (let r = 0; r < m; r += c.tm) {
    // Column block j is computed where shift + r < (j + 1)·cols.
    count += Math.max(0, Math.ceil(n / cols) - Math.floor((shift + r) / cols));
  }
  return count;
}

/**
 * A shape and its thinner versions: tm halved i times with tn halved i + 1
 * times (32 × 8: 32 × 4, 16 × 2, 8 × 1), while the core allows them. The
 * workgroup stays (the device checked the subgroups of that one).
 */
export function thinnerConfigs(c: MatmulConfig): readonly MatmulConfig[] {
  const known = THINNER.get(c);
  if (known) return known;
  const out = [c];
  for (let tm = c.tm, tn = c.tn; tm >= 1 && tn > 1; tm /= 2) {
    tn = Math.max(1, tn / 2);
    const thin = { ...c, tm, tn };
    if (!Number.isInteger(tm) || !Number.isInteger(tn) || matmulConfigProblem(thin)) break;
    out.push(thin);
  }
  THINNER.set(c, out);
  return out;
}

const THINNER_GAIN = 0.75;

/** thinnerConfigs by configuration: every Gram's dispatch asks. */
const THINNER = new WeakMap<MatmulConfig, readonly MatmulConfig[]>();

/**
 * The index in thinnerConfigs(c) of the shape predicted fastest for the Gram
 * C [m, n] (row r is F's row r + shift): the blocks it computes times its
 * core's step cost. A K-FAC factor of a convolution is as thin as 6 × 6 over
 * 10⁶ rows, where a 32 × 64 subgroup block would be nearly all padding.
 * A thinner shape is taken only where it is predicted at least a quarter
 * faster than the best before it, beyond the cost model's ±20%: each is a
 * pipeline of its own (at 70 and 151 columns, 32 × 4 and 32 × 8 measured
 * the same). 0 (the shape itself) where the core has no step cost.
 */
export function thinGramChoice(c: MatmulConfig, m: number, n: number, shift: number): number {
  const cost = CORES[c.core].stepCost;
  if (!cost) return 0;
  let best = 0;
  let bestTime = Infinity;
  thinnerConfigs(c).forEach((t, i) => {
    const time = gramBlocks(t, m, n, shift) * cost(t);
    if (time < THINNER_GAIN * bestTime) [best, bestTime] = [i, time];
  });
  return best;
}

/**
 * The shape with tn halved while C's n columns fit in half a workgroup's
 * (wgN·tn): the same workgroups, each computing and storing half the
 * columns and loading half of B's (the subgroup core also halves its FMAs
 * below 5 columns). EK-FAC's rotations are products 6 to 26 wide over 10⁶
 * rows, whose 64-column tiles were mostly padding: 6 wide, 143 → 60 ns a
 * row on lavapipe (bench/RESULTS.md). It stops where the core refuses the
 * shape and, where B loads as vec4s (`vecB`), at tn = 4, below which they
 * would turn scalar. The choice depends on n alone, never on the batch
 * (m of a layer's products, k of its reductions): prepareFisher's small
 * warm-up batch then builds the pipelines the run's full batches use.
 * (With a floor of 2²² padded FMAs it did not: the MLP's 10-wide output
 * layer built its narrow forward, 60 ms, in the run's first batch.)
 */
export function narrowerConfig(c: MatmulConfig, n: number, vecB: boolean): MatmulConfig {
  let out = c;
  while (out.tn > (vecB ? 4 : 1) && n <= (out.wgN * out.tn) / 2) {
    const half = { ...out, tn: out.tn / 2 };
    if (!Number.isInteger(half.tn) || matmulConfigProblem(half)) break;
    out = half;
  }
  return out;
}

/** The composed module of a core: the block core (its `enable` first), the activations, the entry points. */
export function matmulWgsl(core: MatmulCore): string {
  return `${CORES[core].source}\n${ACTIVATION_WGSL}\n${entries}`;
}

/** The plain composition (the bindings are the same in all). */
export const MATMUL_WGSL = matmulWgsl('plain');

/** Why a configuration cannot run on `gpu`, or undefined if it can. Limits come from the block cores' constants. */
export function matmulConfigProblem(config: MatmulConfig, gpu?: GpuDevice): string | undefined {
  for (const k of ['tm', 'tn', 'wgM', 'wgN'] as const) {
    if (!Number.isInteger(config[k]) || config[k] < 1) return `${k} = ${config[k]} must be a positive integer`;
  }
  const spec = CORES[config.core];
  if (!spec) return `core "${String(config.core)}" is none of ${MATMUL_CORES.join(', ')}`;
  const rows = u32Constant(spec.source, 'BLOCK_ROWS');
  const cols = u32Constant(spec.source, 'BLOCK_COLS');
  if (config.tm > rows || config.tn > cols) return `blocks are at most ${rows}×${cols} with this core, got ${config.tm}×${config.tn}`;
  const problem = spec.problem?.(config, gpu);
  if (problem) return problem;
  if (gpu && config.wgM * config.wgN > gpu.limits.maxComputeInvocationsPerWorkgroup) return `${config.wgM * config.wgN} invocations per workgroup exceed the device's limit`;
  return undefined;
}

/** Why a configuration cannot run on `gpu`, what only a dispatch there can show included; undefined if it can. */
export async function matmulDeviceProblem(config: MatmulConfig, gpu: GpuDevice): Promise<string | undefined> {
  return matmulConfigProblem(config, gpu) ?? (await CORES[config.core].deviceProblem?.(config, gpu));
}

/** The body of WGSL function `name` in the entry points' file. */
function wgslFunction(name: string): string {
  const body = new RegExp(`fn ${name}\\([^]*?\\n}`).exec(entries);
  if (!body) throw new Error(`matmul.wgsl has no function ${name}`);
  return body[0];
}

/** The operand forms (A_…, B_… constants of matmul.wgsl) its a_along_m and b_along_n name: those a core may load as vec4s. */
const VECTOR_FORMS = new Set([...wgslFunction('a_along_m').matchAll(/\bA_\w+/g), ...wgslFunction('b_along_n').matchAll(/\bB_\w+/g)].map((m) => m[0]));

/** Whether each entry point reads A and B in a form VECTOR_FORMS holds, from its block_product call in matmul.wgsl. */
const VECTOR_OPERANDS: ReadonlyMap<string, { a: boolean; b: boolean }> = new Map(
  [...entries.matchAll(/@compute[^]*?fn (\w+)\([^]*?block_product\([^,]*,[^,]*, (A_\w+), (B_\w+)/g)].map((m) => [m[1]!, { a: VECTOR_FORMS.has(m[2]!), b: VECTOR_FORMS.has(m[3]!) }]),
);

/** An operand as a product reads it: from element `offset` of `buffer`, rows `ld` elements apart. */
export interface OperandLayout {
  buffer: GPUBuffer;
  offset: number;
  ld: number;
}

function vectorAligned(o: OperandLayout): boolean {
  return o.offset % 4 === 0 && o.ld % 4 === 0 && o.buffer.size % 16 === 0;
}

/**
 * Which operands of `entry` the shape's core loads as vec4s (the VEC_A and
 * VEC_B overrides of matmul.wgsl): where the core can, the entry reads the
 * operand along its contiguous dimension, the block fits (A: tm a multiple
 * of 4·wgN; B: tn of 4) and the operand is 16-byte aligned.
 */
export function vectorLoads(config: MatmulConfig, entry: string, a: OperandLayout, b: OperandLayout): { a: boolean; b: boolean } {
  const forms = CORES[config.core].vectorLoads ? VECTOR_OPERANDS.get(entry) : undefined;
  return {
    a: !!forms?.a && config.tm % (4 * config.wgN) === 0 && vectorAligned(a),
    b: !!forms?.b && config.tn % 4 === 0 && vectorAligned(b),
  };
}

type Entry = 'linear_forward' | 'linear_backward' | 'weight_gradient' | 'squared_gradient' | 'gram' | 'gram_sliced' | 'product' | 'upper_update' | 'conv_forward' | 'conv_input_gradient';

const NO_CONV = { conv_c: 0, conv_h: 0, conv_w: 0, conv_co: 0, conv_oh: 0, conv_ow: 0, conv_kh: 0, conv_kw: 0, conv_sh: 0, conv_sw: 0, conv_ph: 0, conv_pw: 0, conv_dh: 0, conv_dw: 0 };

/** A convolution's sizes (with one group) as the uniform's conv_* members. */
function convDims(g: ConvGeometry): typeof NO_CONV {
  return {
    conv_c: g.cIn,
    conv_h: g.h,
    conv_w: g.w,
    conv_co: g.cOut,
    conv_oh: g.oh,
    conv_ow: g.ow,
    conv_kh: g.kernel[0],
    conv_kw: g.kernel[1],
    conv_sh: g.stride[0],
    conv_sw: g.stride[1],
    conv_ph: g.padding[0],
    conv_pw: g.padding[1],
    conv_dh: g.dilation[0],
    conv_dw: g.dilation[1],
  };
}

/** The uniform of every entry point; members an entry does not read are 0. */
interface Dims {
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  a_offset?: number;
  b_offset?: number;
  bias_offset?: number;
  c_offset?: number;
  c_bias_offset?: number;
  ldc?: number;
  /** gram_sliced: the rows in all (k is one slice's), and the elements between slices' results. */
  k_total?: number;
  c_slice?: number;
  activation?: number;
  /** linear_forward, conv_forward: 1 stores Z beside Y. */
  store_z?: number;
  scale?: number;
  has_bias?: number;
  conv?: ConvGeometry;
}

function dims(d: Dims): Record<string, number> {
  const { conv, ...sizes } = d;
  // The sizes first: they lead the dispatch's record in error messages.
  return {
    ...sizes,
    a_offset: d.a_offset ?? 0,
    b_offset: d.b_offset ?? 0,
    bias_offset: d.bias_offset ?? 0,
    c_offset: d.c_offset ?? 0,
    c_bias_offset: d.c_bias_offset ?? 0,
    ldc: d.ldc ?? 0,
    k_total: d.k_total ?? 0,
    c_slice: d.c_slice ?? 0,
    activation: d.activation ?? 0,
    store_z: d.store_z ?? 0,
    scale: d.scale ?? 1,
    has_bias: d.has_bias ?? 1,
    ...(conv ? convDims(conv) : NO_CONV),
  };
}

/** Where a layer's weight [out, in] and bias [out] sit in θ-shaped vectors; no bias: undefined. */
export interface LayerOffsets {
  weightOffset: number;
  biasOffset: number | undefined;
}

/** Operands of a dense product into C [m, n] over k: each row-major at an offset with a row stride. */
export interface DenseProduct {
  a: GPUBuffer;
  b: GPUBuffer;
  c: GPUBuffer;
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  aOffset?: number;
  bOffset?: number;
  cOffset?: number;
}

function denseDims(p: DenseProduct): Dims {
  return { m: p.m, n: p.n, k: p.k, lda: p.lda, ldb: p.ldb, ldc: p.ldc, a_offset: p.aOffset ?? 0, b_offset: p.bOffset ?? 0, c_offset: p.cOffset ?? 0 };
}

/** A per-layer reduction over the batch: δ [batch, out] and a [batch, in] into θ-shaped `out`. */
export interface ParameterReduction {
  delta: GPUBuffer;
  a: GPUBuffer;
  out: GPUBuffer;
  layer: LayerOffsets;
  batch: number;
  inputs: number;
  outputs: number;
}

/**
 * Tiles a few output channels wide: a convolution's products have as many
 * columns as channels (6 or 16 in the examples), which the square default
 * tile would mostly pad.
 */
const NARROW_CONFIGS: readonly MatmulConfig[] = [
  { tm: 8, tn: 8, wgM: 64, wgN: 1, core: 'plain' },
  { tm: 8, tn: 8, wgM: 32, wgN: 2, core: 'plain' },
];

export class Matmul {
  /** Pipelines built so far, by shape, entry and activation: each is built on first use. */
  readonly #kernels = new Map<string, ComputeKernel>();
  /** The convolutions' candidates: the shapes, and narrow tiles at the primary shape's rate. */
  readonly #convShapes: readonly MatmulShape[];

  private constructor(
    readonly gpu: GpuDevice,
    /** The shapes each product chooses from (fastestShape); the first is the tuned or default one. */
    readonly shapes: readonly MatmulShape[],
    /** Whether a product may run on a thinner version of its shape (thinGramChoice, narrowerConfig). */
    private readonly thinner: boolean,
  ) {
    const fits = NARROW_CONFIGS.filter((config) => !matmulConfigProblem(config, gpu));
    this.#convShapes = [...shapes, ...fits.map((config) => ({ config, gflops: shapes[0]!.gflops }))];
  }

  /** The primary shape: the tuned one, or the default. */
  get config(): MatmulConfig {
    return this.shapes[0]!.config;
  }

  /**
   * Checks the shapes against the device. Pipelines are built when a product
   * first needs one (a shape and entry point a run never uses costs nothing):
   * the step waits for the build and is encoded again. One configuration
   * means one shape for every product, and a configuration the device
   * cannot run is an error. A list (the tuned or default shapes) lets each
   * product choose (fastestShape), each Gram run on a thinner version of its
   * shape (thinGramChoice) and each narrow product on narrower tiles
   * (narrowerConfig); those that only a dispatch shows the device
   * cannot run (subgroups not formed as workgroup rows) are left out of it,
   * and the plain default is used where none is left.
   */
  static async create(gpu: GpuDevice, shapes: MatmulConfig | readonly MatmulShape[] = DEFAULT_MATMUL_CONFIG): Promise<Matmul> {
    const list = asShapes(shapes);
    if (list.length === 0) throw new RangeError('matmul: no shapes given');
    for (const { config } of list) {
      const problem = matmulConfigProblem(config, gpu);
      if (problem) throw new RangeError(`matmul config ${JSON.stringify(config)}: ${problem}`);
    }
    const problems = await Promise.all(list.map(({ config }) => CORES[config.core].deviceProblem?.(config, gpu)));
    const usable = list.filter((_, i) => problems[i] === undefined);
    if (usable.length === list.length) return new Matmul(gpu, list, Array.isArray(shapes));
    if (!Array.isArray(shapes)) throw new RangeError(`matmul config ${JSON.stringify(list[0]!.config)}: ${problems[0]}`);
    problems.forEach((p, i) => p && trace(`not using the matmul shape ${describeMatmulConfig(list[i]!.config)}: ${p}`));
    return new Matmul(gpu, usable.length > 0 ? usable : [{ config: DEFAULT_MATMUL_CONFIG, gflops: 1 }], true);
  }

  #encode(step: Step, entry: Entry, activation: number, buffers: Record<string, GPUBuffer>, d: Dims, shapes = this.shapes, slices = 1): void {
    const shape = shapes.length === 1 ? 0 : fastestShape(shapes, d.m, d.n);
    let c = shapes[shape]!.config;
    // A Gram takes the thinner version of its shape predicted fastest for it.
    const gram = entry === 'gram' || entry === 'gram_sliced';
    const thin = this.thinner && gram ? thinGramChoice(c, d.m, d.n, (d.a_offset ?? 0) - (d.b_offset ?? 0)) : 0;
    if (thin > 0) c = thinnerConfigs(c)[thin]!;
    const core = CORES[c.core];
    // Operands loaded as vec4s take a pipeline of their own.
    const a = { buffer: buffers['a']!, offset: d.a_offset ?? 0, ld: d.lda };
    const b = { buffer: buffers['b']!, offset: d.b_offset ?? 0, ld: d.ldb };
    let vec = vectorLoads(c, entry, a, b);
    // Another product whose columns fit half its tiles takes them narrower.
    if (this.thinner && !gram) {
      const narrow = narrowerConfig(c, d.n, vec.b);
      if (narrow !== c) [c, vec] = [narrow, vectorLoads(narrow, entry, a, b)];
    }
    // By position in its list (the products' or the convolutions', which begins with the products'), the thinner
    // version and tn. The activation and store_z are uniforms: one pipeline per shape and entry serves every layer.
    const key = `${shapes === this.shapes ? 'p' : 'c'}${shape}.${thin}.${c.tn}/${entry}/${vec.a ? 'a' : ''}${vec.b ? 'b' : ''}`;
    const k = this.#kernels.get(key);
    if (!k) {
      const build = this.gpu.kernel({
        family: core.family,
        source: matmulWgsl(c.core),
        entry,
        overrides: { TM: c.tm, TN: c.tn, WG_M: c.wgM, WG_N: c.wgN, ...(core.vectorLoads ? { VEC_A: vec.a, VEC_B: vec.b } : {}) },
      });
      step.awaitBuild(build.then((built) => this.#kernels.set(key, built)));
      return;
    }
    const tile = tileOf(c);
    const bound = core.vectorLoads ? { ...buffers, a4: buffers['a']!, b4: buffers['b']! } : buffers;
    k.encode(step, bound, dims({ ...d, activation }), [groups(d.n, tile.cols), groups(d.m, tile.rows), slices]);
  }

  /**
   * Z = X Wᵀ + b and Y = act(Z): X [batch, in]; W [out, in] and b [out] in θ
   * at the layer's offsets; Z, Y [batch, out]. Without `z`, Z is not stored
   * (`scratch`, any small buffer, fills its binding).
   */
  forward(
    step: Step,
    p: { x: GPUBuffer; theta: GPUBuffer; layer: LayerOffsets; z?: GPUBuffer; scratch?: GPUBuffer; y: GPUBuffer; batch: number; inputs: number; outputs: number; activation: number },
  ): void {
    const z = p.z ?? p.scratch;
    if (!z) throw new Error('matmul.forward: give z, or scratch when Z is not stored');
    this.#encode(
      step,
      'linear_forward',
      p.activation,
      { a: p.x, b: p.theta, c: z, c_act: p.y },
      {
        m: p.batch,
        n: p.outputs,
        k: p.inputs,
        lda: p.inputs,
        ldb: p.inputs,
        b_offset: p.layer.weightOffset,
        bias_offset: p.layer.biasOffset ?? 0,
        has_bias: p.layer.biasOffset === undefined ? 0 : 1,
        store_z: p.z === undefined ? 0 : 1,
      },
    );
  }

  /**
   * δ' = (δ W) ⊙ act'(Z'): δ [batch, out], W [out, in] in θ, Z' [batch, in]
   * the pre-activation below (act its activation); δ' [batch, in].
   */
  backward(step: Step, p: { delta: GPUBuffer; theta: GPUBuffer; layer: LayerOffsets; zBelow: GPUBuffer; deltaBelow: GPUBuffer; batch: number; inputs: number; outputs: number; activation: number }): void {
    this.#encode(step, 'linear_backward', p.activation, { a: p.delta, b: p.theta, z_in: p.zBelow, c: p.deltaBelow }, {
      m: p.batch,
      n: p.inputs,
      k: p.outputs,
      lda: p.outputs,
      ldb: p.inputs,
      b_offset: p.layer.weightOffset,
    });
  }

  /**
   * The layer's gradient, scale · Σ_s δ[s, o] · ā[s, i] with ā = [a, 1]
   * (δ [batch, out], a [batch, in]), written into θ-shaped `out` at the
   * layer's offsets.
   */
  weightGradient(step: Step, p: ParameterReduction & { scale: number }): void {
    this.#parameterReduction(step, 'weight_gradient', p, p.scale);
  }

  /**
   * Σ_s δ[s, o]² · ā[s, i]², ā = [a, 1] (δ [batch, out], a [batch, in]):
   * the layer's block of Σ_s g_s ⊙ g_s, written into θ-shaped `out`.
   */
  squaredGradient(step: Step, p: ParameterReduction): void {
    this.#parameterReduction(step, 'squared_gradient', p, 1);
  }

  /** Dᵀ-times-[A, 1] products over the batch, stored in θ's layout. */
  #parameterReduction(step: Step, entry: 'weight_gradient' | 'squared_gradient', p: ParameterReduction, scale: number): void {
    const bias = p.layer.biasOffset === undefined ? 0 : 1;
    this.#encode(step, entry, 0, { a: p.delta, b: p.a, c: p.out }, {
      m: p.outputs,
      n: p.inputs + bias,
      k: p.batch,
      lda: p.outputs,
      ldb: p.inputs,
      c_offset: p.layer.weightOffset,
      c_bias_offset: p.layer.biasOffset ?? 0,
      scale,
      has_bias: bias,
    });
  }

  /**
   * The convolution y = act(conv(x) + b) as an implicit product (groups 1):
   * x [batch, c, h, w]; W [co, c, kh, kw] then b [co] in θ at the layer's
   * offsets; y (and z = conv(x) + b when given, else `scratch` fills its
   * binding) [batch, co, oh, ow].
   */
  convForward(
    step: Step,
    g: ConvGeometry,
    p: { x: GPUBuffer; theta: GPUBuffer; layer: LayerOffsets; z?: GPUBuffer; scratch: GPUBuffer; y: GPUBuffer; batch: number; activation: number },
  ): void {
    const taps = g.cIn * g.kernel[0] * g.kernel[1];
    this.#encode(
      step,
      'conv_forward',
      p.activation,
      { a: p.x, b: p.theta, c: p.z ?? p.scratch, c_act: p.y },
      {
        m: p.batch * g.oh * g.ow,
        n: g.cOut,
        k: taps,
        lda: 0,
        ldb: taps,
        b_offset: p.layer.weightOffset,
        bias_offset: p.layer.biasOffset ?? 0,
        has_bias: p.layer.biasOffset === undefined ? 0 : 1,
        store_z: p.z === undefined ? 0 : 1,
        conv: g,
      },
      this.#convShapes,
    );
  }

  /**
   * The convolution's input gradient dx [batch, c, h, w] from δ [batch, co,
   * oh, ow] and W in θ, times act'(zBelow) of the input's producer
   * (`activation`; identity: zBelow is not read).
   */
  convInputGradient(step: Step, g: ConvGeometry, p: { delta: GPUBuffer; theta: GPUBuffer; layer: LayerOffsets; zBelow: GPUBuffer; dx: GPUBuffer; batch: number; activation: number }): void {
    this.#encode(
      step,
      'conv_input_gradient',
      p.activation,
      { a: p.delta, b: p.theta, z_in: p.zBelow, c: p.dx },
      { m: p.batch * g.h * g.w, n: g.cIn, k: g.cOut * g.kernel[0] * g.kernel[1], lda: 0, ldb: 0, b_offset: p.layer.weightOffset, conv: g },
      this.#convShapes,
    );
  }

  /**
   * Rows [row0, row0 + rows) of the Gram block of columns [offset, offset +
   * size) of G [batch, ld]: F[r, c] = Σ_s G[s, offset + row0 + r] · G[s,
   * offset + c], F [rows, size] from element `at` of `out` (default 0). Only
   * the upper triangle (c ≥ row0 + r) is written: blocks wholly below the
   * diagonal are skipped, so entries there are stale.
   */
  gram(step: Step, p: { g: GPUBuffer; out: GPUBuffer; batch: number; ld: number; offset: number; size: number; row0: number; rows: number; at?: number }): void {
    this.#encode(step, 'gram', 0, { a: p.g, b: p.g, c: p.out }, { m: p.rows, n: p.size, k: p.batch, lda: p.ld, ldb: p.ld, a_offset: p.offset + p.row0, b_offset: p.offset, c_offset: p.at ?? 0 });
  }

  /**
   * `gram` with the rows cut into `slices` parts, one per z of the dispatch:
   * the Gram of part s goes to element `at + s · rows · size` of `out`
   * (each as `gram` leaves it, only its upper triangle written), and the
   * caller sums them. A thin Gram over many rows is otherwise one workgroup.
   */
  gramSliced(step: Step, p: { g: GPUBuffer; out: GPUBuffer; batch: number; ld: number; offset: number; size: number; row0: number; rows: number; at?: number; slices: number }): void {
    const k = Math.ceil(p.batch / p.slices);
    this.#encode(
      step,
      'gram_sliced',
      0,
      { a: p.g, b: p.g, c: p.out },
      { m: p.rows, n: p.size, k, k_total: p.batch, lda: p.ld, ldb: p.ld, a_offset: p.offset + p.row0, b_offset: p.offset, c_offset: p.at ?? 0, c_slice: p.rows * p.size },
      this.shapes,
      p.slices,
    );
  }

  /**
   * C = A B: A [m, k] from element `aOffset` of `a` with row stride `lda`,
   * B [k, n] (row stride `ldb`), C [m, n] from element `cOffset` of `c` with
   * row stride `ldc`. `c` must be neither operand's buffer.
   */
  product(step: Step, p: DenseProduct): void {
    this.#encode(step, 'product', 0, { a: p.a, b: p.b, c: p.c }, denseDims(p));
  }

  /**
   * C −= Aᵀ B on and above the diagonal of the square C [m, m] (entries
   * below it may change too, and are not to be read), A [k, m] and B [k, m]
   * laid out as in `product`: the trailing update of a blocked Cholesky.
   */
  upperUpdate(step: Step, p: DenseProduct): void {
    if (p.m !== p.n) throw new RangeError(`upperUpdate: C must be square, got ${p.m} × ${p.n}`);
    this.#encode(step, 'upper_update', 0, { a: p.a, b: p.b, c: p.c }, denseDims(p));
  }
}
