/** `fisher info`: the adapter, its limits and features. */
import { matmulShapesFor, tuningCacheFile } from '../engine/tuning.js';
import { openDevice } from '../gpu/device.js';
import { DEFAULT_MATMUL_CONFIG } from '../kernels/matmul.js';

export async function info(args: { json: boolean }): Promise<void> {
  const gpu = await openDevice();
  try {
    const a = gpu.adapter;
    const shapes = matmulShapesFor(gpu);
    const matmul = shapes[0]!.config;
    const tuned = JSON.stringify(matmul) !== JSON.stringify(DEFAULT_MATMUL_CONFIG);
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ...a, matmul, matmulShapes: shapes, tuned, tuningCache: tuningCacheFile() }, null, 2)}\n`);
      return;
    }
    const lines = [
      `adapter:      ${gpu.describe()}`,
      `vendor:       ${a.vendor || '-'}`,
      `architecture: ${a.architecture || '-'}`,
      `device:       ${a.device || '-'}`,
      `features:     ${a.features.join(', ')}`,
      `subgroups:    ${a.subgroupMinSize ? `${a.subgroupMinSize}…${a.subgroupMaxSize} lanes` : '-'}`,
      `matmul:       ${matmul.tm}×${matmul.tn} blocks, workgroup ${matmul.wgM}×${matmul.wgN}${matmul.subgroups ? ', subgroup-shared rows' : ''} (${tuned ? `tuned, from ${tuningCacheFile()}` : 'default; `fisher bench --tune` tunes it'})${shapes.length > 1 ? `; products too small for its tile choose from ${shapes.length - 1} smaller shapes` : ''}`,
      'limits:',
      ...Object.entries(a.limits).map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    gpu.dispose();
  }
}
