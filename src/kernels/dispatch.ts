/**
 * The dispatch arithmetic, owned here: callers never divide and round up
 * themselves, and no range is limited by one dimension's workgroup count.
 */

/** Workgroups needed to cover `n` items, `perGroup` at a time. */
export function groups(n: number, perGroup: number): number {
  return Math.ceil(n / perGroup);
}

/**
 * Workgroups covering `count` invocations of `wg` each, as a 2-D grid when
 * one dimension's limit (`maxPerDim`) is not enough. The shader's flat index
 * is `id.x + id.y · num_workgroups.x · wg` and it guards `≥ count`.
 */
export function grid(count: number, wg: number, maxPerDim: number): [number, number] {
  const total = groups(count, wg);
  if (total <= maxPerDim) return [total, 1];
  const rows = groups(total, maxPerDim);
  if (rows > maxPerDim) throw new RangeError(`${count} invocations exceed a ${maxPerDim}² grid of ${wg}-wide workgroups`);
  return [groups(total, rows), rows];
}
