/**
 * A safetensors file written piece by piece, for results larger than host
 * memory: every tensor's dtype and shape are known before its values, so the
 * header goes first and each piece is written at its place. The file appears
 * under its name only when finished (written under a temporary name, then
 * renamed); an aborted one leaves nothing. Pieces already written can be read
 * back (a result's lower triangle from its upper, say).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { DTYPES, numel, type Dtype } from './dtypes.js';
import { safetensorsHeader } from './safetensors.js';

export interface TensorInfo {
  dtype: Dtype;
  shape: number[];
}

type Values = Float32Array | Float64Array;

export class SafetensorsStream {
  private constructor(
    readonly path: string,
    readonly tmp: string,
    readonly file: FileHandle,
    /** Byte where each tensor's data starts in the file, its dtype and element count. */
    readonly tensors: ReadonlyMap<string, { start: number; dtype: Dtype; count: number }>,
  ) {}

  /** Creates the file (under a temporary name) with its header; the data is zeros until written. */
  static async create(path: string, tensors: Iterable<[string, TensorInfo]>, metadata: Record<string, string> = {}): Promise<SafetensorsStream> {
    const list = [...tensors];
    const { header, offsets } = safetensorsHeader(list, metadata);
    const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    const file = await open(tmp, 'w+');
    try {
      await file.write(header, 0, header.length, 0);
      const end = header.length + [...offsets.values()].reduce((s, o) => Math.max(s, o.end), 0);
      await file.truncate(end);
    } catch (e) {
      await file.close();
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    const map = new Map(list.map(([name, t]) => [name, { start: header.length + offsets.get(name)!.start, dtype: t.dtype, count: numel(t.shape) }]));
    return new SafetensorsStream(path, tmp, file, map);
  }

  #at(name: string, element: number, count: number): { position: number; bytes: number; dtype: Dtype } {
    const t = this.tensors.get(name);
    if (!t) throw new RangeError(`no tensor "${name}" in ${this.path}`);
    if (element < 0 || element + count > t.count) throw new RangeError(`elements [${element}, ${element + count}) are outside tensor "${name}" of ${t.count}`);
    const size = DTYPES[t.dtype].bytes;
    return { position: t.start + element * size, bytes: count * size, dtype: t.dtype };
  }

  /** The byte of the file where tensor `name`'s data starts. */
  dataStart(name: string): number {
    return this.#at(name, 0, 0).position;
  }

  /** Writes `values` (of the tensor's dtype) from element `element` of tensor `name`. */
  async write(name: string, values: Values, element: number): Promise<void> {
    const at = this.#at(name, element, values.length);
    if (!(values instanceof DTYPES[at.dtype].array)) throw new TypeError(`tensor "${name}" is ${at.dtype}; got a ${values.constructor.name}`);
    await this.file.write(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 0, at.bytes, at.position);
  }

  /** Reads `count` elements of tensor `name` from element `element`. */
  async read(name: string, element: number, count: number): Promise<Values> {
    const at = this.#at(name, element, count);
    const bytes = new Uint8Array(at.bytes);
    await this.file.read(bytes, 0, at.bytes, at.position);
    return at.dtype === 'F64' ? new Float64Array(bytes.buffer) : new Float32Array(bytes.buffer);
  }

  /** Closes the file and gives it its name. */
  async finish(): Promise<void> {
    await this.file.sync();
    await this.file.close();
    await rename(this.tmp, this.path);
  }

  /** Closes and removes the unfinished file. */
  async abort(): Promise<void> {
    await this.file.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}
