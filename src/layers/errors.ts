/**
 * An error in what the user gave: a model spec, weights or data that do not
 * fit. The message is one line that names the file, tensor and index at fault;
 * the command line prints it as is.
 */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

/** Throws an InputError naming the first NaN or Inf in `data`, if any. */
export function assertFinite(data: ArrayLike<number>, what: string, shape?: readonly number[]): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v)) throw new InputError(`${what} holds ${v} at ${formatIndex(i, shape)}`);
  }
}

/** A flat index as a multi-index of `shape`, e.g. [3, 17]. */
export function formatIndex(flat: number, shape?: readonly number[]): string {
  if (!shape || shape.length <= 1) return `index ${flat}`;
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(flat % shape[d]!);
    flat = Math.floor(flat / shape[d]!);
  }
  return `index [${idx.join(', ')}]`;
}
