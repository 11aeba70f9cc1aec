/**
 * Fisher.load: a Fisher file back as the object `fisher()` returned. The
 * file is self-describing (DESIGN.md §4): its metadata names the kind,
 * structure, reduction, N and the parameters' names and shapes in θ order;
 * each structure's module reads its own tensors (its `load`). A result too
 * large for host memory (a tiled full or block Fisher) stays in its file and
 * is read by slices.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { DTYPES } from '../io/dtypes.js';
import { readSafetensorsHeader, type TensorEntry } from '../io/safetensors.js';
import { tensorLayout, type LayerBlock, type TensorLayout } from '../model/layout.js';
import { InputError } from '../layers/errors.js';
import { KFAC_MODES, KINDS, REDUCTIONS, STRUCTURES, type FisherKind, type FisherStructure, type KfacMode, type Reduction } from './options.js';
import type { FisherInfo, FisherMatrix } from './result.js';
import { STRUCTURE_TYPES } from './structures/registry.js';
import type { FisherFile } from './structures/structure.js';

/** The format this version writes and reads. */
export const FISHER_FORMAT = 'fisher-gpu/1';

function field(path: string, metadata: Record<string, string>, key: string): string {
  const v = metadata[key];
  if (v === undefined) throw new InputError(`${path}: the metadata has no "${key}"; is this a fisher-gpu Fisher file?`);
  return v;
}

function oneOf<T extends string>(path: string, key: string, value: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(value)) throw new InputError(`${path}: metadata "${key}" is "${value}", not one of ${allowed.join(', ')}`);
  return value as T;
}

function count(path: string, key: string, value: string, least: number): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < least) throw new InputError(`${path}: metadata "${key}" is "${value}", not a whole number ≥ ${least}`);
  return n;
}

/** The FisherInfo and the parameters' layout a Fisher file's metadata records. */
export function fisherInfoOf(path: string, metadata: Record<string, string>): { info: FisherInfo; layout: TensorLayout } {
  const format = metadata['format'];
  if (format !== FISHER_FORMAT) throw new InputError(`${path}: not a fisher-gpu Fisher file (metadata format is ${format === undefined ? 'missing' : `"${format}"`}, expected "${FISHER_FORMAT}")`);
  const seed = field(path, metadata, 'seed');
  const info: FisherInfo = {
    kind: oneOf<FisherKind>(path, 'kind', field(path, metadata, 'kind'), KINDS),
    structure: oneOf<FisherStructure>(path, 'structure', field(path, metadata, 'structure'), STRUCTURES),
    reduction: oneOf<Reduction>(path, 'reduction', field(path, metadata, 'reduction'), REDUCTIONS),
    n: count(path, 'n', field(path, metadata, 'n'), 1),
    samples: count(path, 'samples', field(path, metadata, 'samples'), 1),
    seed: seed === 'none' ? undefined : count(path, 'seed', seed, 0),
    backend: metadata['backend'] ?? 'unknown',
  };
  if (metadata['kfac'] !== undefined) info.kfac = oneOf<KfacMode>(path, 'kfac', metadata['kfac'], KFAC_MODES);
  if (metadata['rank'] !== undefined) {
    info.lowrank = { rank: count(path, 'rank', metadata['rank'], 1), passes: count(path, 'passes', field(path, metadata, 'passes'), 0), converged: field(path, metadata, 'converged') === 'true' };
  }
  if (metadata['shard'] !== undefined) {
    const m = /^(\d+)\/(\d+)$/.exec(metadata['shard']);
    if (!m) throw new InputError(`${path}: metadata "shard" is "${metadata['shard']}", not i/k`);
    info.shard = { index: Number(m[1]), count: Number(m[2]), totalN: count(path, 'shard_total_n', field(path, metadata, 'shard_total_n'), 1), run: field(path, metadata, 'run') };
  }
  let parameters: unknown;
  try {
    parameters = JSON.parse(field(path, metadata, 'parameters'));
  } catch (e) {
    throw new InputError(`${path}: metadata "parameters" is not JSON: ${(e as Error).message}`);
  }
  const valid =
    Array.isArray(parameters) &&
    parameters.every((p) => typeof p === 'object' && p !== null && typeof (p as { name: unknown }).name === 'string' && Array.isArray((p as { shape: unknown }).shape) && (p as { shape: unknown[] }).shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0));
  if (!valid) throw new InputError(`${path}: metadata "parameters" is not a list of {name, shape}`);
  const layout = tensorLayout(parameters as { name: string; shape: number[] }[]);
  return { info, layout: metadata['layers'] === undefined ? layout : withLayers(path, layout, metadata['layers']) };
}

/** The layout with the layer blocks the metadata records (files written before it derive them from the names). */
function withLayers(path: string, layout: TensorLayout, text: string): TensorLayout {
  let layers: unknown;
  try {
    layers = JSON.parse(text);
  } catch (e) {
    throw new InputError(`${path}: metadata "layers" is not JSON: ${(e as Error).message}`);
  }
  if (!Array.isArray(layers) || !layers.every((l) => typeof l === 'object' && l !== null && typeof l.name === 'string' && Number.isSafeInteger(l.size) && l.size > 0)) {
    throw new InputError(`${path}: metadata "layers" is not a list of {name, size}`);
  }
  let offset = 0;
  const blocks = (layers as { name: string; size: number }[]).map((l) => {
    const b = { name: l.name, offset, size: l.size };
    offset += l.size;
    return b;
  });
  if (offset !== layout.total) throw new InputError(`${path}: metadata "layers" covers ${offset} parameters, "parameters" ${layout.total}`);
  return { ...layout, layers: blocks };
}

class OpenedFisherFile implements FisherFile {
  readonly #entries: Map<string, TensorEntry>;

  constructor(
    readonly path: string,
    readonly info: FisherInfo,
    readonly layout: TensorLayout,
    entries: readonly TensorEntry[],
    readonly dataOffset: number,
  ) {
    this.#entries = new Map(entries.map((e) => [e.name, e]));
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  #entry(name: string, shape: readonly number[]): TensorEntry {
    const e = this.#entries.get(name);
    if (!e) throw new InputError(`${this.path}: a ${this.info.structure} Fisher file should hold tensor "${name}"; it does not`);
    if (e.shape.join(',') !== shape.join(',')) throw new InputError(`${this.path}: tensor "${name}" is [${e.shape}], expected [${shape}] for the parameters the metadata lists`);
    if (e.dtype !== 'F32' && e.dtype !== 'F64') throw new InputError(`${this.path}: tensor "${name}" is ${e.dtype}; Fisher files hold F32 or F64`);
    return e;
  }

  async values(name: string, shape: readonly number[]): Promise<Float64Array> {
    const e = this.#entry(name, shape);
    const bytes = new Uint8Array(e.end - e.begin);
    const fd = openSync(this.path, 'r');
    try {
      readSync(fd, bytes, 0, bytes.length, this.dataOffset + e.begin);
    } finally {
      closeSync(fd);
    }
    const typed = new DTYPES[e.dtype as 'F32' | 'F64'].array(bytes.buffer);
    for (let i = 0; i < typed.length; i++) {
      if (!Number.isFinite(typed[i]!)) throw new InputError(`${this.path}: tensor "${name}" holds ${typed[i]} at index ${i}`);
    }
    return Float64Array.from(typed);
  }

  async parameterValues(block?: LayerBlock): Promise<Float64Array> {
    const start = block?.offset ?? 0;
    const size = block?.size ?? this.layout.total;
    const out = new Float64Array(size);
    for (const e of this.layout.entries) {
      if (e.offset < start || e.offset >= start + size) continue;
      out.set(await this.values(e.name, e.shape), e.offset - start);
    }
    return out;
  }

  dataStart(name: string, shape: readonly number[], dtype: 'F32' | 'F64'): number {
    const e = this.#entry(name, shape);
    if (e.dtype !== dtype) throw new InputError(`${this.path}: tensor "${name}" is ${e.dtype}, expected ${dtype}`);
    return this.dataOffset + e.begin;
  }
}

/** Opens a Fisher file's header: its info and layout, its tensors read on demand. */
export async function openFisherFile(path: string): Promise<FisherFile> {
  const header = await readSafetensorsHeader(path);
  const { info, layout } = fisherInfoOf(path, header.metadata);
  return new OpenedFisherFile(path, info, layout, header.entries, header.dataOffset);
}

/** The Fisher a file holds, as the object `fisher()` returned. */
export async function loadFisher(path: string): Promise<FisherMatrix> {
  const file = await openFisherFile(path);
  const type = STRUCTURE_TYPES.get(file.info.structure);
  if (!type) throw new InputError(`${path}: structure "${file.info.structure}" is not one this version reads`);
  return type.load(file);
}

/** Fisher matrices from files: `Fisher.load(path)`. */
export const Fisher = {
  load: loadFisher,
};
