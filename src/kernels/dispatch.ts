/** Workgroups needed to cover `n` items, `perGroup` at a time. Callers never round up themselves. */
export function groups(n: number, perGroup: number): number {
  return Math.ceil(n / perGroup);
}
