/**
 * One GPU device per test file. A missing adapter fails the tests: `npm test`
 * installs the software driver first (tools/install-software-gpu.sh), so on
 * a machine set up as the README says there is always one.
 */
import { afterAll, beforeAll } from 'vitest';
import { openDevice, type GpuDevice } from '../../src/gpu/device.js';

export function useGpu(): () => GpuDevice {
  let device: GpuDevice | undefined;
  beforeAll(async () => {
    device = await openDevice();
  });
  afterAll(() => {
    device?.dispose();
  });
  return () => {
    if (!device) throw new Error('GPU device not opened');
    return device;
  };
}
