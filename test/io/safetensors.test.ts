import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DTYPES, type Dtype, type Tensor } from '../../src/io/dtypes.js';
import { decodeSafetensors, encodeSafetensors, readSafetensors, SafetensorsError, writeSafetensors, type SafetensorsErrorCode } from '../../src/io/safetensors.js';
import { Rng } from '../../src/model/random.js';

/** A file from a header object and a data length, with the header's length prefix as given. */
function rawFile(header: unknown, dataBytes: number, headerLenOverride?: bigint): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, headerLenOverride ?? BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

function expectCode(bytes: Uint8Array, code: SafetensorsErrorCode): void {
  try {
    decodeSafetensors(bytes);
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    expect((e as SafetensorsError).code).toBe(code);
    expect((e as Error).message).not.toContain('\n');
    return;
  }
  throw new Error(`expected ${code}, decoding succeeded`);
}

function randomTensor(rng: Rng, dtype: Dtype): Tensor {
  const rank = rng.int(4);
  const shape = Array.from({ length: rank }, () => rng.int(5));
  const n = shape.reduce((a, b) => a * b, 1);
  const Ctor = DTYPES[dtype].array;
  const data = new Ctor(n);
  for (let i = 0; i < n; i++) {
    const v = (rng.uniform() - 0.5) * 1e6;
    if (data instanceof BigInt64Array) data[i] = BigInt(Math.round(v)) * 1_000_003n;
    else (data as Float32Array)[i] = dtype.startsWith('I') ? Math.round(v) : v;
  }
  return { dtype, shape, data };
}

describe('safetensors', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('round-trips random tensors of every dtype, with metadata (property test)', () => {
    const rng = new Rng(7);
    for (let trial = 0; trial < 50; trial++) {
      const tensors = new Map<string, Tensor>();
      const count = rng.int(6);
      for (let t = 0; t < count; t++) tensors.set(`t${t}.w`, randomTensor(rng, (Object.keys(DTYPES) as Dtype[])[rng.int(4)]!));
      const metadata = trial % 2 ? { kind: 'empirical', n: String(trial) } : {};
      const bytes = encodeSafetensors(tensors, metadata);
      const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect((8 + headerLen) % 8, 'data starts 8-byte aligned').toBe(0);
      const back = decodeSafetensors(bytes);
      expect(back.metadata).toEqual(metadata);
      expect([...back.tensors.keys()]).toEqual([...tensors.keys()]);
      for (const [name, t] of tensors) {
        const b = back.tensors.get(name)!;
        expect(b.dtype).toBe(t.dtype);
        expect(b.shape).toEqual(t.shape);
        expect(Array.from(b.data as ArrayLike<unknown>)).toEqual(Array.from(t.data as ArrayLike<unknown>));
      }
    }
  });

  it('reads tensors whose data starts at an unaligned byte', () => {
    // A header of odd length: the F64 data starts at an odd file offset.
    const header = { a: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } };
    const bytes = rawFile(JSON.stringify(header) + ' ', 16);
    const view = new DataView(bytes.buffer, bytes.length - 16);
    view.setFloat64(0, 1.5, true);
    view.setFloat64(8, -2.25, true);
    expect(Array.from(decodeSafetensors(bytes).tensors.get('a')!.data as Float64Array)).toEqual([1.5, -2.25]);
  });

  it('with copy: false, tensors that start aligned are views of the bytes (a file is copied once), the others copies', () => {
    // x (F32) starts at data offset 0, 8-aligned; y (F64) at offset 12, not 8-aligned.
    const header = { x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, y: { dtype: 'F64', shape: [1], data_offsets: [12, 20] } };
    const json = JSON.stringify(header);
    const bytes = rawFile(json + ' '.repeat((8 - ((8 + json.length) % 8)) % 8), 20);
    const start = bytes.length - 20;
    new Float32Array(bytes.buffer, start, 3).set([1, -2, 3.5]);
    new DataView(bytes.buffer).setFloat64(start + 12, -0.125, true);
    const viewed = decodeSafetensors(bytes, { copy: false }).tensors;
    expect(Array.from(viewed.get('x')!.data as Float32Array)).toEqual([1, -2, 3.5]);
    expect(Array.from(viewed.get('y')!.data as Float64Array)).toEqual([-0.125]);
    expect(viewed.get('x')!.data.buffer, 'x is a view').toBe(bytes.buffer);
    expect(viewed.get('y')!.data.buffer, 'y is a copy').not.toBe(bytes.buffer);
    // The default copies everything: the caller keeps its bytes.
    expect(decodeSafetensors(bytes).tensors.get('x')!.data.buffer).not.toBe(bytes.buffer);
  });

  const t = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
  const cases: [string, SafetensorsErrorCode, Uint8Array][] = [
    ['a file shorter than 8 bytes', 'HeaderTooSmall', new Uint8Array(5)],
    ['a header length over the cap', 'HeaderTooLarge', rawFile({}, 0, 200_000_000n)],
    ['a header length past the end', 'InvalidHeaderLength', rawFile({}, 0, 1000n)],
    ['a header not starting with {', 'InvalidHeaderStart', rawFile(' []', 0)],
    ['invalid JSON', 'InvalidHeaderJson', rawFile('{"a": ', 0)],
    ['invalid UTF-8 in the header', 'InvalidHeaderUtf8', (() => {
      const f = rawFile({ __metadata__: { n: 'xx' } }, 0);
      f[f.length - 4] = 0xff;
      return f;
    })()],
    ['a tensor named twice', 'DuplicateKey', rawFile('{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 4)],
    ['a field named twice in a tensor entry', 'DuplicateKey', rawFile('{"a": {"dtype": "F32", "shape": [1], "dtype": "F64", "data_offsets": [0, 4]}}', 4)],
    ['a metadata key named twice', 'DuplicateKey', rawFile('{"__metadata__": {"k": "1", "k": "2"}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 4)],
    ['a JSON array', 'InvalidHeaderStart', rawFile('[1]', 0)],
    ['metadata that is not strings', 'InvalidMetadata', rawFile({ __metadata__: { n: 3 } }, 0)],
    ['a tensor entry that is not an object', 'InvalidTensorInfo', rawFile({ a: 3 }, 0)],
    ['an unknown dtype', 'InvalidDtype', rawFile({ a: t('Q7', [1], [0, 1]) }, 1)],
    ['a negative dimension', 'InvalidShape', rawFile({ a: t('F32', [-1], [0, 4]) }, 4)],
    ['offsets that are not a pair', 'InvalidOffset', rawFile({ a: t('F32', [1], [0]) }, 4)],
    ['offsets that end before they begin', 'InvalidOffset', rawFile({ a: t('F32', [1], [4, 0]) }, 4)],
    ['a size that does not match the shape', 'SizeMismatch', rawFile({ a: t('F32', [2], [0, 4]) }, 4)],
    ['overlapping offsets', 'UnorderedOffsets', rawFile({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, 8)],
    ['a gap between tensors', 'UnorderedOffsets', rawFile({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }, 12)],
    ['a declared size larger than the file', 'FileLengthMismatch', rawFile({ a: t('F32', [4], [0, 16]) }, 8)],
    ['trailing bytes after the data', 'FileLengthMismatch', rawFile({ a: t('F32', [1], [0, 4]) }, 8)],
  ];
  for (const [what, code, bytes] of cases) {
    it(`rejects ${what} with ${code}`, () => expectCode(bytes, code));
  }

  it('names the file in errors, and writes atomically leaving nothing behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fisher-st-'));
    dirs.push(dir);
    const bad = join(dir, 'bad.safetensors');
    await writeFile(bad, rawFile('{"a": ', 0));
    await expect(readSafetensors(bad)).rejects.toThrow(`${bad}: header is not valid JSON`);
    const good = join(dir, 'good.safetensors');
    await writeSafetensors(good, [['x', { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) }]], { k: 'v' });
    expect((await readSafetensors(good)).metadata).toEqual({ k: 'v' });
    // A tensor whose shape does not match its data: nothing is written, not even a temporary file.
    await expect(writeSafetensors(join(dir, 'never.safetensors'), [['x', { dtype: 'F32', shape: [3], data: new Float32Array(2) }]])).rejects.toThrow(SafetensorsError);
    expect((await readdir(dir)).sort()).toEqual(['bad.safetensors', 'good.safetensors']);
  });
});
