/**
 * Shards: the Fisher of the i-th of k contiguous slices of the data
 * (`fisher compute --shard i/k`), recorded in the result with N of the whole
 * data and a digest of the run (model, data, options), so that `mergeShards`
 * can check it holds every shard of one run exactly once before it combines
 * them into the Fisher of the whole data (DESIGN.md §1: each structure's
 * merge). Pure TypeScript (no Node modules): a browser computes shards too.
 */
import { InputError } from '../layers/errors.js';
import type { DataSource } from '../model/data.js';
import type { Network } from '../model/network.js';
import type { ResolvedOptions } from './options.js';
import type { FisherMatrix } from './result.js';

/** Which shard to compute: the index-th (1-based) of count. */
export interface ShardChoice {
  index: number;
  count: number;
}

export function checkShard(s: ShardChoice, n: number): void {
  if (!Number.isSafeInteger(s.count) || s.count < 1) throw new InputError(`shard count must be a positive integer, got ${s.count}`);
  if (!Number.isSafeInteger(s.index) || s.index < 1 || s.index > s.count) throw new InputError(`shard index must be from 1 to ${s.count}, got ${s.index}`);
  if (s.count > n) throw new InputError(`${s.count} shards of ${n} samples: some would be empty`);
}

/** The samples [start, end) of shard index/count of n: contiguous, sizes differing by at most one. */
export function shardRange(s: ShardChoice, n: number): { start: number; end: number } {
  return { start: Math.floor(((s.index - 1) * n) / s.count), end: Math.floor((s.index * n) / s.count) };
}

/** A 53-bit hash of byte runs (cyrb53), fed a part at a time: tells runs apart by accident of inputs, not against an adversary. */
class Digest {
  #h1 = 0xdeadbeef;
  #h2 = 0x41c6ce57;

  /** Adds bytes to the current part. */
  add(bytes: Uint8Array): this {
    let h1 = this.#h1;
    let h2 = this.#h2;
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      h1 = Math.imul(h1 ^ b, 2654435761);
      h2 = Math.imul(h2 ^ b, 1597334677);
    }
    [this.#h1, this.#h2] = [h1, h2];
    return this;
  }

  /** Ends a part: a separator, so that moving bytes between parts changes the hash. */
  endPart(): this {
    this.#h1 = Math.imul(this.#h1 ^ 0xff, 2654435761);
    return this;
  }

  value(): string {
    let [h1, h2] = [this.#h1, this.#h2];
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, '0');
  }
}

const bytesOf = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Rows of the data the digest reads at a time (a file's, from disk). */
const DIGEST_ROWS = 4096;

/** The digest of a run: the model's spec and weights, the whole data, and the options that change the result. */
export async function runDigest(model: Network, data: DataSource, o: ResolvedOptions): Promise<string> {
  const text = JSON.stringify({ spec: model.specJson(), kind: o.kind, structure: o.structure, reduction: o.reduction, samples: o.samples, seed: o.seed, kfac: o.kfac, rank: o.rank, n: data.n });
  const d = new Digest().add(new TextEncoder().encode(text)).endPart();
  for (const t of model.tensors().values()) d.add(bytesOf(t.data as Float32Array)).endPart();
  // x, then y, each one part, in one read of the rows: a data file is never held whole (its targets are, anyway).
  const y: Float32Array[] = [];
  for (let start = 0; start < data.n; start += DIGEST_ROWS) {
    const rows = await data.rows(start, start + DIGEST_ROWS);
    d.add(bytesOf(rows.x));
    y.push(rows.y.slice());
  }
  d.endPart();
  for (const part of y) d.add(bytesOf(part));
  return d.endPart().value();
}

/**
 * The Fisher of the whole data from the Fishers of its shards (any order):
 * refuses a set that is not every shard of one run exactly once.
 */
export function mergeShards(fishers: readonly FisherMatrix[]): FisherMatrix {
  if (fishers.length === 0) throw new InputError('no Fishers to merge');
  const shards = fishers.map((f, k) => {
    if (!f.info.shard) throw new InputError(`Fisher ${k + 1} of ${fishers.length} is not a shard (its metadata has no shard); merge plain Fishers with merge()`);
    return f.info.shard;
  });
  const first = shards[0]!;
  shards.forEach((s, k) => {
    if (s.run !== first.run || s.count !== first.count || s.totalN !== first.totalN) {
      throw new InputError(`shard ${s.index}/${s.count} (Fisher ${k + 1}) is from another run than shard ${first.index}/${first.count} (run ${s.run} against ${first.run}): a foreign shard`);
    }
  });
  const seen = new Map<number, number>();
  shards.forEach((s, k) => {
    if (seen.has(s.index)) throw new InputError(`shard ${s.index}/${s.count} is given twice (Fishers ${seen.get(s.index)! + 1} and ${k + 1})`);
    seen.set(s.index, k);
  });
  const missing = Array.from({ length: first.count }, (_, i) => i + 1).filter((i) => !seen.has(i));
  if (missing.length > 0) throw new InputError(`shard${missing.length > 1 ? 's' : ''} ${missing.map((i) => `${i}/${first.count}`).join(', ')} missing`);
  const ordered = Array.from({ length: first.count }, (_, i) => fishers[seen.get(i + 1)!]!);
  const n = ordered.reduce((s, f) => s + f.info.n, 0);
  if (n !== first.totalN) throw new InputError(`the shards hold ${n} samples, their run ${first.totalN}`);
  return ordered[0]!.merge(ordered.slice(1));
}
