/**
 * A dataset checked against a model: inputs x [N, …input] (or flattened
 * [N, prod(input)]) float32 and targets, either class labels y [N] (int32 or
 * int64) or values y [N, out] float32 (DESIGN.md §4). Inputs are held flat,
 * row-major per sample; targets as float32 rows of the model's target width
 * (1 for labels; integers up to 2^24 are exact), the form both engines and
 * the GPU kernels read.
 */
import type { Tensor } from '../io/dtypes.js';
import { readSafetensors } from '../io/safetensors.js';
import { assertFinite, formatIndex, InputError } from '../layers/errors.js';
import type { Network } from './network.js';

/**
 * The samples an estimator reads, batch by batch: a Dataset in memory, or a
 * data file read a batch at a time (DataFile, in Node), so that the data need
 * not fit in host memory and the first batch computes while the rest is read.
 */
export interface DataSource {
  readonly n: number;
  /** Values per sample of x. */
  readonly inputs: number;
  /** Target values per sample. */
  readonly targetWidth: number;
  /** Refuses data that does not fit `model`: the widths, and each target under the likelihood. */
  check(model: Network, source?: string): void;
  /**
   * Rows [start, end) (`end` clamped to n) as a checked Dataset. Its arrays
   * may be reused by the second call after this one (a file's batches
   * alternate between two buffers): read batch i + 1 while batch i computes,
   * never further ahead.
   */
  rows(start: number, end: number): Promise<Dataset>;
  /**
   * Starts reading rows [start, end) before `rows` asks for them (a file's
   * first batch, as the device opens): batches within them are then views
   * of its buffer, and no other call until a batch outside is asked for.
   * It counts as a call of `rows` for the reuse of arrays. Sources in
   * memory need not have it.
   */
  readAhead?(start: number, end: number): void;
}

export class Dataset implements DataSource {
  /**
   * Checks the sizes and that every value is finite; the targets are checked
   * against a model by `check` (fisher and train call it).
   */
  constructor(
    /** Inputs, row-major [n, inputs]. */
    readonly x: Float32Array,
    /** Targets, row-major [n, targetWidth]. */
    readonly y: Float32Array,
    readonly n: number,
    readonly inputs: number,
    readonly targetWidth: number,
  ) {
    for (const [what, v] of [['n', n], ['inputs', inputs], ['targetWidth', targetWidth]] as const) {
      if (!Number.isSafeInteger(v) || v < (what === 'n' ? 0 : 1)) throw new InputError(`dataset: ${what} must be a ${what === 'n' ? 'non-negative' : 'positive'} integer, got ${v}`);
    }
    if (!(x instanceof Float32Array) || x.length !== n * inputs) throw new InputError(`dataset: x must be a Float32Array of n·inputs = ${n * inputs} values, got ${x?.length}`);
    if (!(y instanceof Float32Array) || y.length !== n * targetWidth) throw new InputError(`dataset: y must be a Float32Array of n·targetWidth = ${n * targetWidth} values, got ${y?.length}`);
    assertFinite(x, 'dataset: x', [n, inputs]);
    assertFinite(y, 'dataset: y', [n, targetWidth]);
  }

  check(model: Network, source = 'data'): void {
    checkFits(this, model, source);
  }

  /** Rows [start, end) as views, no copy; `end` is clamped to n. */
  slice(start: number, end: number): Dataset {
    end = rowsEnd(start, end, this.n, 'dataset');
    // Rows of a checked dataset are checked: not again for every batch (7.8M values of x per pass of the 784-wide example).
    return Dataset.checked({
      x: this.x.subarray(start * this.inputs, end * this.inputs),
      y: this.y.subarray(start * this.targetWidth, end * this.targetWidth),
      n: end - start,
      inputs: this.inputs,
      targetWidth: this.targetWidth,
    });
  }

  /** Rows [start, end) as views (slice): in memory, they stay valid. */
  rows(start: number, end: number): Promise<Dataset> {
    return Promise.resolve(this.slice(start, end));
  }

  /** @internal For slices and DataFile: a dataset of values already checked, as the constructor would check them. */
  static checked(fields: Pick<Dataset, 'x' | 'y' | 'n' | 'inputs' | 'targetWidth'>): Dataset {
    return Object.assign(Object.create(Dataset.prototype) as Dataset, fields);
  }

  /** Validates tensors `x` and `y` against the model; `source` names them in errors. */
  static fromTensors(tensors: ReadonlyMap<string, Tensor>, model: Network, source = 'data'): Dataset {
    const x = tensors.get('x');
    const y = tensors.get('y');
    const n = checkDataShapes(x, y, model, source);
    if (!(x!.data instanceof Float32Array) || x!.data.length !== n * model.inputs) {
      throw new InputError(`${source}: tensor "x" must hold a Float32Array of ${n * model.inputs} values for its shape [${x!.shape.join(', ')}], got ${x!.data.length}`);
    }
    assertFinite(x!.data, `${source}: tensor "x"`, x!.shape);
    // Checked here, x and y each once (the constructor would check them again).
    return Dataset.checked({ x: x!.data, y: dataTargets(y!, n, model, source), n, inputs: model.inputs, targetWidth: model.targetWidth });
  }

  static async load(path: string, model: Network): Promise<Dataset> {
    const { tensors } = await readSafetensors(path);
    return Dataset.fromTensors(tensors, model, path);
  }
}

type Declared = Pick<Tensor, 'dtype' | 'shape'>;

/**
 * The number of samples, once the dtypes and shapes of `x` and `y` (as a
 * file declares them, before their values are read) fit the model: x
 * [N, …input] or [N, prod(input)] float32, y labels [N] or targets [N, out].
 */
export function checkDataShapes(x: Declared | undefined, y: Declared | undefined, model: Network, source: string): number {
  const shape = model.inputShape;
  const expected = shape.length === 1 ? `[N, ${model.inputs}]` : `[N, ${shape.join(', ')}] or [N, ${model.inputs}]`;
  if (!x) throw new InputError(`${source}: missing tensor "x" ${expected}`);
  if (!y) throw new InputError(`${source}: missing tensor "y"`);
  if (x.dtype !== 'F32') throw new InputError(`${source}: tensor "x" is ${x.dtype}, expected F32`);
  const trailing = x.shape.slice(1);
  const fits = (s: readonly number[]) => trailing.length === s.length && trailing.every((d, i) => d === s[i]);
  if (x.shape.length < 2 || !(fits(shape) || fits([model.inputs]))) {
    throw new InputError(`${source}: tensor "x" has shape [${x.shape.join(', ')}], expected ${expected} for the model's input [${shape.join(', ')}]`);
  }
  const n = x.shape[0]!;
  if (n === 0) throw new InputError(`${source}: tensor "x" has no samples`);
  const lik = model.likelihood;
  const width = model.targetWidth;
  if (labelTargets(y, model)) {
    // Class labels [N] (or, for one output, one value per sample).
    if (y.shape.length !== 1 || y.shape[0] !== n) throw new InputError(`${source}: tensor "y" has shape [${y.shape.join(', ')}], expected [${n}]`);
    if (lik.targets === 'labels' && y.dtype !== 'I32' && y.dtype !== 'I64') {
      throw new InputError(`${source}: tensor "y" is ${y.dtype}; ${lik.spec.type} labels must be I32 or I64`);
    }
  } else {
    if (y.dtype !== 'F32') throw new InputError(`${source}: tensor "y" is ${y.dtype}; ${lik.spec.type} targets must be F32 [N, ${width}]`);
    if (y.shape.length !== 2 || y.shape[0] !== n || y.shape[1] !== width) {
      throw new InputError(`${source}: tensor "y" has shape [${y.shape.join(', ')}], expected [${n}, ${width}]`);
    }
  }
  return n;
}

/** Whether y holds one value per sample (class labels, or the one output's values) rather than rows [N, out]. */
function labelTargets(y: Declared, model: Network): boolean {
  return model.likelihood.targets === 'labels' || (y.shape.length === 1 && model.outputs === 1);
}

/**
 * y's values (of shapes checkDataShapes accepted for n samples) as the
 * float32 target rows the engines read, each finite and valid under the
 * model's likelihood.
 */
export function dataTargets(y: Tensor, n: number, model: Network, source: string): Float32Array {
  const width = model.targetWidth;
  let targets: Float32Array;
  if (labelTargets(y, model)) {
    targets = new Float32Array(n);
    for (let i = 0; i < n; i++) targets[i] = Number(y.data[i]!);
  } else {
    if (!(y.data instanceof Float32Array) || y.data.length !== n * width) {
      throw new InputError(`${source}: tensor "y" must hold a Float32Array of ${n * width} values for its shape [${y.shape.join(', ')}], got ${y.data.length}`);
    }
    targets = y.data;
  }
  assertFinite(targets, `${source}: tensor "y"`, y.shape);
  for (let i = 0; i < n; i++) {
    const why = model.likelihood.checkTarget(targets.subarray(i * width, (i + 1) * width), model.outputs);
    if (why) throw new InputError(`${source}: tensor "y" at ${formatIndex(i * width, y.shape)}: ${why}`);
  }
  return targets;
}

/** Refuses samples that do not fit `model`: the widths, and each target under the likelihood (a DataSource's check). */
export function checkFits(data: Pick<Dataset, 'n' | 'inputs' | 'targetWidth' | 'y'>, model: Network, source: string): void {
  if (data.inputs !== model.inputs) throw new InputError(`${source} has ${data.inputs} inputs per sample, the model takes ${model.inputs} ([${model.inputShape.join(', ')}])`);
  if (data.targetWidth !== model.targetWidth) throw new InputError(`${source} has ${data.targetWidth} targets per sample, the model's likelihood needs ${model.targetWidth}`);
  for (let i = 0; i < data.n; i++) {
    const why = model.likelihood.checkTarget(data.y.subarray(i * data.targetWidth, (i + 1) * data.targetWidth), model.outputs);
    if (why) throw new InputError(`${source}: target of sample ${i}: ${why}`);
  }
}

/** `end` clamped to n, once [start, end) is a range of rows; `what` names the data in the error. */
export function rowsEnd(start: number, end: number, n: number, what: string): number {
  end = Math.min(end, n);
  if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start <= end)) throw new RangeError(`${what}: rows [${start}, ${end}) of ${n}`);
  return end;
}
