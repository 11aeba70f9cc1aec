/** `fisher info`: the adapter, its limits and features. */
import { openDevice } from '../gpu/device.js';

export async function info(args: { json: boolean }): Promise<void> {
  const gpu = await openDevice();
  try {
    const a = gpu.adapter;
    if (args.json) {
      process.stdout.write(`${JSON.stringify(a, null, 2)}\n`);
      return;
    }
    const lines = [
      `adapter:      ${gpu.describe()}`,
      `vendor:       ${a.vendor || '-'}`,
      `architecture: ${a.architecture || '-'}`,
      `device:       ${a.device || '-'}`,
      `features:     ${a.features.join(', ')}`,
      'limits:',
      ...Object.entries(a.limits).map(([k, v]) => `  ${k.padEnd(36)} ${v}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    gpu.dispose();
  }
}
