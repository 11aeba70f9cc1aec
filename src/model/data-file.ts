/**
 * A data file (safetensors, DESIGN.md §4) read a batch at a time: the
 * header and the targets when opened, the inputs x as the estimator asks
 * for their rows. Host memory holds two batches of x, not N samples, and
 * the first batch computes while the next is read. The whole file read at
 * once cost the 784-256-256-10 example (31 MB) 120–190 ms before anything
 * could compute, most of it the kernel's page faults on fresh memory
 * (bench/RESULTS.md, issue 12's tenth part). Node only (files).
 */
import { close, openSync, read } from 'node:fs';
import { DTYPES, numel, type Tensor } from '../io/dtypes.js';
import { readSafetensorsHeader, SafetensorsError, type TensorEntry } from '../io/safetensors.js';
import { assertFinite } from '../layers/errors.js';
import { checkDataShapes, checkFits, Dataset, dataTargets, rowsEnd, type DataSource } from './data.js';
import type { Network } from './network.js';

export class DataFile implements DataSource {
  readonly inputs: number;
  readonly targetWidth: number;
  /** The two buffers batches alternate between, grown to the largest batch asked for. */
  readonly #buffers: [Float32Array, Float32Array] = [new Float32Array(0), new Float32Array(0)];
  /** The last read into each buffer, done (or failed): the next into it waits for it. Undefined: none yet. */
  readonly #writes: [Promise<void> | undefined, Promise<void> | undefined] = [undefined, undefined];
  #next = 0;
  /** The rows readAhead read: batches within them are views of its buffer, until one is asked for outside. */
  #ahead: { start: number; end: number; read: Promise<Float32Array> } | undefined;
  /** x as the header gives it: its shape, and its first byte in the file. */
  readonly #x: { shape: number[]; position: number };

  private constructor(
    readonly path: string,
    readonly n: number,
    model: Network,
    /** Targets, row-major [n, targetWidth], read and checked when opened. */
    readonly y: Float32Array,
    x: { shape: number[]; position: number },
  ) {
    this.inputs = model.inputs;
    this.targetWidth = model.targetWidth;
    this.#x = x;
  }

  /**
   * Opens `path` for `model`: reads its header and targets and checks them
   * (the sizes, each target under the likelihood), as Dataset.load does;
   * x's values are checked as their rows are read.
   */
  static async open(path: string, model: Network): Promise<DataFile> {
    const { entries, dataOffset } = await readSafetensorsHeader(path);
    const entry = (name: string) => entries.find((e) => e.name === name);
    const x = entry('x');
    const y = entry('y');
    const n = checkDataShapes(x, y, model, path);
    const targets = dataTargets(await readTensor(path, y!, dataOffset), n, model, path);
    return new DataFile(path, n, model, targets, { shape: x!.shape, position: dataOffset + x!.begin });
  }

  check(model: Network, source = this.path): void {
    checkFits(this, model, source);
  }

  /**
   * A hint: a range that is not one of the file's rows reads nothing. The
   * first read is handed to the operating system before this returns (a
   * file opened synchronously, then one read into the buffer): `fisher
   * compute` calls it just before it opens the device, whose first calls
   * hold the main thread for 0.13 s on lavapipe, and a read that still
   * needed the main thread to start waited for them (bench/RESULTS.md,
   * issue 12's eleventh part).
   */
  readAhead(start: number, end: number): void {
    end = Math.min(end, this.n);
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && 0 <= start && start < end)) return;
    const read = this.#readNext(start, end);
    // Its error is the rows call's to throw (or no one's, if none asks).
    read.catch(() => undefined);
    this.#ahead = { start, end, read };
  }

  async rows(start: number, end: number): Promise<Dataset> {
    end = rowsEnd(start, end, this.n, this.path);
    const ahead = this.#ahead;
    if (ahead && ahead.start <= start && end <= ahead.end) {
      const x = (await ahead.read).subarray((start - ahead.start) * this.inputs, (end - ahead.start) * this.inputs);
      return this.#dataset(start, end, x);
    }
    this.#ahead = undefined;
    return this.#dataset(start, end, await this.#readNext(start, end));
  }

  /**
   * Reads rows [start, end) of x into the next of the two buffers (the
   * read-ahead's among them, so that its memory serves again), once the
   * read before into that buffer is done.
   */
  #readNext(start: number, end: number): Promise<Float32Array> {
    const k = this.#next;
    this.#next = 1 - k;
    const count = (end - start) * this.inputs;
    const into = () => {
      if (this.#buffers[k]!.length < count) this.#buffers[k] = new Float32Array(count);
      return this.#readX(start, this.#buffers[k]!.subarray(0, count));
    };
    // The buffer's first read starts now; a later one once the read before it into the buffer is done.
    const before = this.#writes[k];
    const read = before ? before.then(into) : into();
    this.#writes[k] = read.then(
      () => undefined,
      () => undefined,
    );
    return read;
  }

  /** Reads x's rows from `start` into `x` (as many as it holds) and checks them. */
  async #readX(start: number, x: Float32Array): Promise<Float32Array> {
    await readAt(this.path, new Uint8Array(x.buffer, x.byteOffset, x.byteLength), this.#x.position + start * this.inputs * 4);
    assertFinite(x, `${this.path}: tensor "x"`, this.#x.shape, start * this.inputs);
    return x;
  }

  #dataset(start: number, end: number, x: Float32Array): Dataset {
    return Dataset.checked({ x, y: this.y.subarray(start * this.targetWidth, end * this.targetWidth), n: end - start, inputs: this.inputs, targetWidth: this.targetWidth });
  }
}

/**
 * Fills `into` from the file at `position`. The file is opened synchronously
 * (microseconds) and the read is with the operating system when this
 * returns: nothing waits for the main thread until it is done. A file
 * shorter than its header says is an error naming it; one that cannot be
 * opened throws here.
 */
function readAt(path: string, into: Uint8Array, position: number): Promise<void> {
  const fd = openSync(path, 'r');
  return new Promise<void>((resolve, reject) => {
    const finish = (error: Error | undefined) => close(fd, () => (error ? reject(error) : resolve()));
    const next = (done: number) => {
      if (done === into.length) return finish(undefined);
      read(fd, into, done, into.length - done, position + done, (e, bytesRead) => {
        if (e) return finish(e);
        if (bytesRead === 0) return finish(new SafetensorsError('FileLengthMismatch', `${path}: the file ended at byte ${position + done}, inside its data`));
        next(done + bytesRead);
      });
    };
    next(0);
  });
}

/** One tensor's values, read whole. */
async function readTensor(path: string, e: TensorEntry, dataOffset: number): Promise<Tensor> {
  const bytes = new Uint8Array(e.end - e.begin);
  await readAt(path, bytes, dataOffset + e.begin);
  return { dtype: e.dtype, shape: e.shape, data: new DTYPES[e.dtype].array(bytes.buffer, 0, numel(e.shape)) };
}
