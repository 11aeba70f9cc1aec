/**
 * safetensors reading and writing, validated the way the reference
 * implementation (huggingface/safetensors) does: a capped header length, a
 * JSON object header, known dtypes, checked size arithmetic, offsets that are
 * contiguous from 0 with no gap or overlap, and a file exactly as long as the
 * header says. Each failure is one typed error.
 *
 * Layout: u64 little-endian header length H, then H bytes of JSON
 * `{ "__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]} }`,
 * then the data buffer; offsets are relative to the buffer's start.
 */
import { open, readFile } from 'node:fs/promises';
import { DTYPES, dtypeOf, isDtype, numel, type Dtype, type Tensor } from './dtypes.js';
import { writeFileAtomic } from './atomic.js';

/** Same cap as the reference implementation: 100 MB of header. */
export const MAX_HEADER_BYTES = 100_000_000;

export type SafetensorsErrorCode =
  | 'HeaderTooSmall'
  | 'HeaderTooLarge'
  | 'InvalidHeaderLength'
  | 'InvalidHeaderStart'
  | 'InvalidHeaderUtf8'
  | 'InvalidHeaderJson'
  | 'DuplicateKey'
  | 'InvalidMetadata'
  | 'InvalidTensorInfo'
  | 'InvalidDtype'
  | 'InvalidShape'
  | 'InvalidOffset'
  | 'SizeMismatch'
  | 'UnorderedOffsets'
  | 'FileLengthMismatch';

export class SafetensorsError extends Error {
  constructor(
    readonly code: SafetensorsErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

function fail(code: SafetensorsErrorCode, message: string): never {
  throw new SafetensorsError(code, message);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIndex(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** The first key that appears twice in one object of (valid) JSON text, if any. */
function repeatedKey(json: string): string | undefined {
  // One frame per open object (its keys so far, and whether a key comes next) or array.
  const stack: { keys: Set<string> | undefined; expectKey: boolean }[] = [];
  for (let i = 0; i < json.length; i++) {
    const ch = json[i]!;
    const top = stack[stack.length - 1];
    if (ch === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(json.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return key;
        top.keys.add(key);
        top.expectKey = false;
      }
      i = j;
    } else if (ch === '{') stack.push({ keys: new Set(), expectKey: true });
    else if (ch === '[') stack.push({ keys: undefined, expectKey: false });
    else if (ch === '}' || ch === ']') stack.pop();
    else if (ch === ',' && top?.keys) top.expectKey = true;
  }
  return undefined;
}

/** A tensor's entry in the header: its dtype, shape and byte range in the data. */
export interface TensorEntry {
  name: string;
  dtype: Dtype;
  shape: number[];
  begin: number;
  end: number;
}

/** What the header says: the metadata, the tensors in header order, and where the data starts in the file. */
export interface SafetensorsHeader {
  metadata: Record<string, string>;
  entries: TensorEntry[];
  dataOffset: number;
}

/**
 * Parses and validates the header in `bytes` (the file's first bytes, at
 * least the header) of a file `fileLength` bytes long.
 */
export function decodeSafetensorsHeader(bytes: Uint8Array, fileLength: number): SafetensorsHeader {
  if (fileLength < 8) fail('HeaderTooSmall', `file is ${bytes.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen64 = view.getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_HEADER_BYTES)) fail('HeaderTooLarge', `header length ${headerLen64} exceeds the ${MAX_HEADER_BYTES}-byte cap`);
  const headerLen = Number(headerLen64);
  if (8 + headerLen > fileLength) fail('InvalidHeaderLength', `header length ${headerLen} runs past the end of the ${fileLength}-byte file`);
  let headerText = '';
  try {
    headerText = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    fail('InvalidHeaderUtf8', 'header is not valid UTF-8');
  }
  if (!headerText.startsWith('{')) fail('InvalidHeaderStart', 'header does not start with "{"');
  let header: unknown;
  try {
    header = JSON.parse(headerText);
  } catch (e) {
    fail('InvalidHeaderJson', `header is not valid JSON: ${(e as Error).message}`);
  }
  if (!isRecord(header)) fail('InvalidHeaderJson', 'header is not a JSON object');
  // JSON.parse keeps the last of repeated keys; the reference refuses them.
  const repeated = repeatedKey(headerText);
  if (repeated !== undefined) fail('DuplicateKey', `header names ${JSON.stringify(repeated)} twice in one object`);

  const metadata: Record<string, string> = {};
  const entries: TensorEntry[] = [];
  for (const [name, info] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(info)) fail('InvalidMetadata', '__metadata__ is not an object of strings');
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== 'string') fail('InvalidMetadata', `__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    if (!isRecord(info)) fail('InvalidTensorInfo', `tensor "${name}": entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = info;
    if (typeof dtype !== 'string' || !isDtype(dtype)) {
      fail('InvalidDtype', `tensor "${name}": dtype ${JSON.stringify(dtype)} is not one of ${Object.keys(DTYPES).join(', ')}`);
    }
    if (!Array.isArray(shape) || !shape.every(isIndex)) fail('InvalidShape', `tensor "${name}": shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isIndex)) {
      fail('InvalidOffset', `tensor "${name}": data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) fail('InvalidOffset', `tensor "${name}": data_offsets [${begin}, ${end}] end before they begin`);
    const elements = numel(shape as number[]);
    const size = elements * DTYPES[dtype].bytes;
    if (!Number.isSafeInteger(size)) fail('InvalidShape', `tensor "${name}": shape ${JSON.stringify(shape)} overflows`);
    if (end - begin !== size) {
      fail('SizeMismatch', `tensor "${name}": ${dtype} ${JSON.stringify(shape)} needs ${size} bytes but data_offsets span ${end - begin}`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }

  // Offsets must tile the buffer: sorted, starting at 0, no gaps, no overlaps.
  const dataLength = fileLength - 8 - headerLen;
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const e of sorted) {
    if (e.begin !== cursor) {
      fail('UnorderedOffsets', `tensor "${e.name}": data begins at ${e.begin}, expected ${cursor} (offsets overlap or leave a gap)`);
    }
    cursor = e.end;
  }
  if (cursor !== dataLength) {
    fail('FileLengthMismatch', `tensors cover ${cursor} data bytes but the file holds ${dataLength}`);
  }
  return { metadata, entries, dataOffset: 8 + headerLen };
}

/**
 * Parses a whole safetensors file held in memory. Tensors are copies, or
 * with `copy: false` views of `bytes` where they start aligned (the caller
 * hands the bytes over and must not change them).
 */
export function decodeSafetensors(bytes: Uint8Array, options: { copy?: boolean } = {}): SafetensorsFile {
  const { metadata, entries, dataOffset } = decodeSafetensorsHeader(bytes, bytes.length);
  const data = bytes.subarray(dataOffset);

  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const Ctor = DTYPES[e.dtype].array;
    const at = data.byteOffset + e.begin;
    if (options.copy === false && at % Ctor.BYTES_PER_ELEMENT === 0) {
      // A view of the caller's bytes (they hand them over): no copy of a large dataset.
      tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: new Ctor(data.buffer as ArrayBuffer, at, numel(e.shape)) });
      continue;
    }
    // Copy: the data may start at any byte, and typed arrays need alignment.
    // (Not data.slice: on a Node Buffer that is a view, not a copy.)
    const chunk = new Uint8Array(e.end - e.begin);
    chunk.set(data.subarray(e.begin, e.end));
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: new Ctor(chunk.buffer, 0, numel(e.shape)) });
  }
  return { tensors, metadata };
}

/** Encodes tensors (in the given order) and string metadata. */
/**
 * The header of a file holding tensors of these dtypes and shapes, in order:
 * its bytes (the 8-byte length, then the JSON padded so the data starts
 * 8-byte aligned, as the reference does) and each tensor's byte range in the
 * data that follows.
 */
export function safetensorsHeader(
  tensors: Iterable<[string, { dtype: Tensor['dtype']; shape: number[] }]>,
  metadata: Record<string, string> = {},
): { header: Uint8Array; offsets: Map<string, { start: number; end: number }> } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header['__metadata__'] = metadata;
  const offsets = new Map<string, { start: number; end: number }>();
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new SafetensorsError('InvalidTensorInfo', 'a tensor cannot be named __metadata__');
    const end = offset + numel(t.shape) * DTYPES[t.dtype].bytes;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, end] };
    offsets.set(name, { start: offset, end });
    offset = end;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const text = new TextEncoder().encode(json);
  const bytes = new Uint8Array(8 + text.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(text.length), true);
  bytes.set(text, 8);
  return { header: bytes, offsets };
}

export function encodeSafetensors(tensors: Iterable<[string, Tensor]>, metadata: Record<string, string> = {}): Uint8Array {
  const list = [...tensors];
  for (const [name, t] of list) {
    if (t.dtype !== dtypeOf(t.data)) throw new SafetensorsError('InvalidDtype', `tensor "${name}": dtype ${t.dtype} does not match its ${t.data.constructor.name}`);
    if (numel(t.shape) !== t.data.length) {
      throw new SafetensorsError('InvalidShape', `tensor "${name}": shape ${JSON.stringify(t.shape)} has ${numel(t.shape)} elements, data has ${t.data.length}`);
    }
  }
  const { header, offsets } = safetensorsHeader(list, metadata);
  const size = list.reduce((s, [name]) => Math.max(s, offsets.get(name)!.end), 0);
  const out = new Uint8Array(header.length + size);
  out.set(header, 0);
  for (const [name, t] of list) out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), header.length + offsets.get(name)!.start);
  return out;
}

/** Reads and validates a safetensors file; errors name the file. */
export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  const bytes = await readFile(path);
  try {
    // The bytes are this call's own: tensors that start aligned are views of them, so a dataset
    // is copied once, from the file into memory, not twice.
    return decodeSafetensors(bytes, { copy: false });
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(e.code, `${path}: ${e.message}`);
    throw e;
  }
}

/** Reads and validates only the header of a safetensors file (a large file's tensors are then read by range). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const head = new Uint8Array(Math.min(size, 8));
    await file.read(head, 0, head.length, 0);
    let length = 8;
    if (head.length === 8) {
      const h = new DataView(head.buffer).getBigUint64(0, true);
      length = h > BigInt(MAX_HEADER_BYTES) ? 8 : 8 + Math.min(Number(h), size - 8);
    }
    const bytes = new Uint8Array(length);
    await file.read(bytes, 0, length, 0);
    return decodeSafetensorsHeader(bytes, size);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SafetensorsError(e.code, `${path}: ${e.message}`);
    throw e;
  } finally {
    await file.close();
  }
}

/** Writes a safetensors file atomically: it appears only when complete. */
export async function writeSafetensors(path: string, tensors: Iterable<[string, Tensor]>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
