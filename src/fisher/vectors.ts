/**
 * Vectors in parameter space as files: safetensors of parameter-shaped
 * tensors named as the parameters (what `save_file(model.state_dict())` or
 * a dict of gradients gives in Python), read into θ order for a layout and
 * written back from it.
 */
import type { Tensor } from '../io/dtypes.js';
import { readSafetensors } from '../io/safetensors.js';
import { InputError } from '../layers/errors.js';
import type { TensorLayout } from '../model/layout.js';

/** The flat θ-ordered vector of a file's tensors for `layout`; refuses a missing or mis-shaped parameter and names the extras it ignores. */
export async function readParameterVector(path: string, layout: TensorLayout, what = 'vector'): Promise<{ values: Float64Array; ignored: string[] }> {
  const { tensors } = await readSafetensors(path);
  const values = new Float64Array(layout.total);
  for (const e of layout.entries) {
    const t = tensors.get(e.name);
    if (!t) throw new InputError(`${path}: the ${what} has no tensor "${e.name}" [${e.shape}]; its parameters must match the Fisher's (names and shapes, as state_dict() gives them)`);
    if (t.shape.join(',') !== e.shape.join(',')) throw new InputError(`${path}: tensor "${e.name}" is [${t.shape}], the Fisher's parameter is [${e.shape}]`);
    if (t.dtype !== 'F32' && t.dtype !== 'F64') throw new InputError(`${path}: tensor "${e.name}" is ${t.dtype}; parameter vectors are F32 or F64`);
    for (let i = 0; i < e.size; i++) {
      const x = Number(t.data[i]!);
      if (!Number.isFinite(x)) throw new InputError(`${path}: tensor "${e.name}" holds ${x} at index ${i}`);
      values[e.offset + i] = x;
    }
  }
  const names = new Set(layout.entries.map((e) => e.name));
  return { values, ignored: [...tensors.keys()].filter((n) => !names.has(n)) };
}

/** A θ-ordered vector as parameter-shaped tensors. */
export function parameterTensors(layout: TensorLayout, values: ArrayLike<number>, dtype: 'F32' | 'F64' = 'F32'): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const e of layout.entries) {
    const slice = Array.prototype.slice.call(values, e.offset, e.offset + e.size) as number[];
    out.set(e.name, { dtype, shape: e.shape, data: dtype === 'F64' ? Float64Array.from(slice) : Float32Array.from(slice) });
  }
  return out;
}
