/** `fisher info`: the adapter, its limits and features. */
import { adapterKind } from '../engine/autotune.js';
import { isTuned, matmulShapesFor, tuningCacheFile } from '../engine/tuning.js';
import { openDevice } from '../gpu/device.js';
import { describeMatmulConfig } from '../kernels/matmul.js';

export async function info(args: { json: boolean }): Promise<void> {
  const gpu = await openDevice();
  try {
    const a = gpu.adapter;
    const shapes = matmulShapesFor(gpu);
    const matmul = shapes[0]!.config;
    const tuned = isTuned(gpu);
    const kind = adapterKind(gpu);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ...a, kind, matmul, matmulShapes: shapes, tuned, tuningCache: tuningCacheFile() }, null, 2)}\n`);
      return;
    }
    const lines = [
      `adapter:      ${gpu.describe()}`,
      `vendor:       ${a.vendor || '-'}`,
      `architecture: ${a.architecture || '-'}`,
      `device:       ${a.device || '-'}`,
      `features:     ${a.features.join(', ')}`,
      `subgroups:    ${a.subgroupMinSize ? `${a.subgroupMinSize}…${a.subgroupMaxSize} lanes` : '-'}`,
      `kind:         ${kind === 'cpu' ? 'CPU-SIMD driver' : 'GPU'}`,
      `matmul:       ${describeMatmulConfig(matmul)} (${tuned ? `tuned, from ${tuningCacheFile()}` : `the default for a ${kind === 'cpu' ? 'CPU-SIMD driver' : 'GPU'}; the first fisher compute searches, \`fisher bench --tune\` further`})${shapes.length > 1 ? `; products too small for its tile choose from ${shapes.length - 1} smaller shapes` : ''}`,
      'limits:',
      ...Object.entries(a.limits).map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    gpu.dispose();
  }
}
