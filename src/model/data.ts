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

export class Dataset {
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

  /** Refuses data that does not fit `model`: the widths, and each target under the likelihood. */
  check(model: Network, source = 'data'): void {
    if (this.inputs !== model.inputs) throw new InputError(`${source} has ${this.inputs} inputs per sample, the model takes ${model.inputs} ([${model.inputShape.join(', ')}])`);
    if (this.targetWidth !== model.targetWidth) throw new InputError(`${source} has ${this.targetWidth} targets per sample, the model's likelihood needs ${model.targetWidth}`);
    for (let i = 0; i < this.n; i++) {
      const why = model.likelihood.checkTarget(this.y.subarray(i * this.targetWidth, (i + 1) * this.targetWidth), model.outputs);
      if (why) throw new InputError(`${source}: target of sample ${i}: ${why}`);
    }
  }

  /** Rows [start, end) as views, no copy; `end` is clamped to n. */
  slice(start: number, end: number): Dataset {
    end = Math.min(end, this.n);
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start <= end)) throw new RangeError(`dataset: rows [${start}, ${end}) of ${this.n}`);
    // Rows of a checked dataset are checked: not again for every batch (7.8M values of x per pass of the 784-wide example).
    return Dataset.#checked({
      x: this.x.subarray(start * this.inputs, end * this.inputs),
      y: this.y.subarray(start * this.targetWidth, end * this.targetWidth),
      n: end - start,
      inputs: this.inputs,
      targetWidth: this.targetWidth,
    });
  }

  /** A dataset of values already checked, as the constructor would check them. */
  static #checked(fields: Pick<Dataset, 'x' | 'y' | 'n' | 'inputs' | 'targetWidth'>): Dataset {
    return Object.assign(Object.create(Dataset.prototype) as Dataset, fields);
  }

  /** Validates tensors `x` and `y` against the model; `source` names them in errors. */
  static fromTensors(tensors: ReadonlyMap<string, Tensor>, model: Network, source = 'data'): Dataset {
    const x = tensors.get('x');
    const y = tensors.get('y');
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
    if (!(x.data instanceof Float32Array) || x.data.length !== n * model.inputs) {
      throw new InputError(`${source}: tensor "x" must hold a Float32Array of ${n * model.inputs} values for its shape [${x.shape.join(', ')}], got ${x.data.length}`);
    }
    assertFinite(x.data, `${source}: tensor "x"`, x.shape);

    const lik = model.likelihood;
    const width = model.targetWidth;
    let targets: Float32Array;
    if (lik.targets === 'labels' || (y.shape.length === 1 && model.outputs === 1)) {
      // Class labels [N] (or, for one output, one value per sample).
      if (y.shape.length !== 1 || y.shape[0] !== n) throw new InputError(`${source}: tensor "y" has shape [${y.shape.join(', ')}], expected [${n}]`);
      if (lik.targets === 'labels' && y.dtype !== 'I32' && y.dtype !== 'I64') {
        throw new InputError(`${source}: tensor "y" is ${y.dtype}; ${lik.spec.type} labels must be I32 or I64`);
      }
      targets = new Float32Array(n);
      for (let i = 0; i < n; i++) targets[i] = Number(y.data[i]!);
    } else {
      if (y.dtype !== 'F32') throw new InputError(`${source}: tensor "y" is ${y.dtype}; ${lik.spec.type} targets must be F32 [N, ${width}]`);
      if (y.shape.length !== 2 || y.shape[0] !== n || y.shape[1] !== width) {
        throw new InputError(`${source}: tensor "y" has shape [${y.shape.join(', ')}], expected [${n}, ${width}]`);
      }
      if (!(y.data instanceof Float32Array) || y.data.length !== n * width) {
        throw new InputError(`${source}: tensor "y" must hold a Float32Array of ${n * width} values for its shape [${y.shape.join(', ')}], got ${y.data.length}`);
      }
      targets = y.data;
    }
    assertFinite(targets, `${source}: tensor "y"`, y.shape);
    for (let i = 0; i < n; i++) {
      const row = targets.subarray(i * width, (i + 1) * width);
      const why = lik.checkTarget(row, model.outputs);
      if (why) throw new InputError(`${source}: tensor "y" at ${formatIndex(i * width, y.shape)}: ${why}`);
    }
    // Checked above, x and y each once (the constructor would check them again).
    return Dataset.#checked({ x: x.data, y: targets, n, inputs: model.inputs, targetWidth: width });
  }

  static async load(path: string, model: Network): Promise<Dataset> {
    const { tensors } = await readSafetensors(path);
    return Dataset.fromTensors(tensors, model, path);
  }
}
