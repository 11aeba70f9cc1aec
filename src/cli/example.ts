/**
 * The built-in example: a seeded MLP and a seeded classification dataset
 * labelled by a teacher network, so that `fisher compute` can be run with no
 * files of one's own, and the same files come out on every machine.
 */
import { CpuEngine } from '../engine/cpu.js';
import { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';
import { Rng } from '../model/random.js';
import { mlpSpec } from '../model/spec.js';

/**
 * A model with the given widths and N samples of data: inputs ~ N(0, 1),
 * labels the argmax of a second, random "teacher" network of the same shape.
 */
export async function makeExample(widths: readonly number[], n: number, seed: number): Promise<{ model: Network; data: Dataset }> {
  const spec = mlpSpec(widths);
  const model = Network.random(spec, seed);
  const teacher = Network.random(spec, seed + 1);
  const rng = new Rng(seed + 2);
  const x = rng.normals(n * model.inputs);
  const y = new Float32Array(n);
  // The teacher's outputs, by the float64 reference (plain, and fast enough here).
  const t = await (await new CpuEngine().load(teacher)).forward(x, n);
  const k = model.outputs;
  for (let s = 0; s < n; s++) {
    let best = 0;
    for (let o = 1; o < k; o++) if (t[s * k + o]! > t[s * k + best]!) best = o;
    y[s] = best;
  }
  return { model, data: new Dataset(x, y, n, model.inputs, 1) };
}
