/**
 * The built-in examples: a seeded network of one of the built-in
 * architectures (src/model/architectures.ts) and a seeded classification
 * dataset labelled by a teacher, so that `fisher compute` can be run with no
 * files of one's own, and the same files come out on every machine.
 */
import { CpuEngine } from '../engine/cpu.js';
import { Dataset } from '../model/data.js';
import { Network } from '../model/network.js';
import { Rng } from '../model/random.js';
import { architectureSpec, type Architecture } from '../model/architectures.js';

/**
 * A model of the architecture (an MLP of the given widths) and N samples of
 * data: inputs ~ N(0, 1), labels the argmax of a teacher. For the MLP the
 * teacher is a second random network of the same shape; for the image
 * networks a random linear map of the pixels (the float64 reference would
 * take minutes to run a convolutional teacher over 10⁴ images).
 */
export async function makeExample(arch: Architecture, n: number, seed: number, widths?: readonly number[]): Promise<{ model: Network; data: Dataset }> {
  const spec = architectureSpec(arch, widths);
  const model = Network.random(spec, seed);
  const rng = new Rng(seed + 2);
  const x = rng.normals(n * model.inputs);
  const y = new Float32Array(n);
  const k = model.outputs;
  const t = arch === 'mlp' ? await (await new CpuEngine().load(Network.random(spec, seed + 1))).forward(x, n) : linearTeacher(x, n, model.inputs, k, seed + 1);
  for (let s = 0; s < n; s++) {
    let best = 0;
    for (let o = 1; o < k; o++) if (t[s * k + o]! > t[s * k + best]!) best = o;
    y[s] = best;
  }
  return { model, data: new Dataset(x, y, n, model.inputs, 1) };
}

/** f = x Wᵀ, W [k, inputs] ~ N(0, 1/inputs): the image examples' teacher. */
function linearTeacher(x: Float32Array, n: number, inputs: number, k: number, seed: number): Float64Array {
  const w = new Rng(seed).normals(k * inputs, 1 / Math.sqrt(inputs));
  const f = new Float64Array(n * k);
  for (let s = 0; s < n; s++) {
    for (let o = 0; o < k; o++) {
      let acc = 0;
      for (let i = 0; i < inputs; i++) acc += w[o * inputs + i]! * x[s * inputs + i]!;
      f[s * k + o] = acc;
    }
  }
  return f;
}
