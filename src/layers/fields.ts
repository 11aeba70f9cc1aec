/**
 * Reading a layer's JSON fields: each reader names the layer and the field
 * at fault in one line, as an InputError, before any work is done.
 */
import { InputError } from './errors.js';

export type Raw = Readonly<Record<string, unknown>>;

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A whole number ≥ `min` (default 1). */
export function intField(raw: Raw, key: string, where: string, options: { min?: number; default?: number } = {}): number {
  const v = raw[key] ?? options.default;
  const min = options.min ?? 1;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
    throw new InputError(`${where}: "${key}" must be an integer ≥ ${min}, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
  }
  return v;
}

/** An int or [h, w] pair of ints ≥ `min`, as PyTorch's conv and pool arguments. */
export function pairField(raw: Raw, key: string, where: string, options: { min?: number; default?: number } = {}): [number, number] {
  const v = raw[key] ?? options.default;
  const min = options.min ?? 1;
  const ok = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= min;
  if (ok(v)) return [v, v];
  if (Array.isArray(v) && v.length === 2 && ok(v[0]) && ok(v[1])) return [v[0], v[1]];
  throw new InputError(`${where}: "${key}" must be an integer ≥ ${min} or a pair [h, w] of them, got ${v === undefined ? 'nothing' : JSON.stringify(v)}`);
}

export function boolField(raw: Raw, key: string, where: string, fallback: boolean): boolean {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'boolean') throw new InputError(`${where}: "${key}" must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function numberField(raw: Raw, key: string, where: string, fallback: number, check: (x: number) => boolean, what: string): number {
  const v = raw[key] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) throw new InputError(`${where}: "${key}" must be ${what}, got ${JSON.stringify(v)}`);
  return v;
}

/** A pair back as JSON: one int when both agree, as PyTorch prints it. */
export function pairJson([h, w]: readonly [number, number]): number | [number, number] {
  return h === w ? h : [h, w];
}

/** Refuses a per-sample input shape that is not `rank`-dimensional. */
export function expectRank(input: readonly number[], rank: number, where: string, what: string): void {
  if (input.length !== rank) throw new InputError(`${where}: ${what} takes a ${rank}-dimensional input per sample, got [${input.join(', ')}]`);
}
