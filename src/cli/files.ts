/** Writing the built-in example's files: model spec, weights, data. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { writeSafetensors } from '../io/safetensors.js';
import type { Dataset } from '../model/data.js';
import type { Network } from '../model/network.js';

export interface ExampleFiles {
  model: string;
  weights: string;
  data: string;
}

export async function writeExample(dir: string, model: Network, data: Dataset): Promise<ExampleFiles> {
  await mkdir(dir, { recursive: true });
  const files = { model: join(dir, 'model.json'), weights: join(dir, 'weights.safetensors'), data: join(dir, 'data.safetensors') };
  await writeFileAtomic(files.model, `${JSON.stringify(model.specJson(), null, 2)}\n`);
  await writeSafetensors(files.weights, model.tensors());
  await writeSafetensors(files.data, [
    ['x', { dtype: 'F32', shape: [data.n, ...model.inputShape], data: data.x }],
    ['y', { dtype: 'I32', shape: [data.n], data: Int32Array.from(data.y) }],
  ]);
  return files;
}
