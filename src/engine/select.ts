/**
 * Choosing an engine: the GPU when a device is given or can be opened, the
 * CPU reference when asked, or (for 'auto') when no adapter exists.
 */
import { openDevice, type GpuDevice } from '../gpu/device.js';
import { NoAdapterError } from '../gpu/errors.js';
import { CpuEngine } from './cpu.js';
import type { Engine } from './engine.js';
import { GpuEngine } from './gpu.js';
import { ensureTuned } from './tuning.js';

export type BackendChoice = 'auto' | 'gpu' | 'cpu';

export interface SelectedEngine {
  engine: Engine;
  /** The device opened for this engine, to dispose with it (none for the CPU). */
  device: GpuDevice | undefined;
  /** Why the choice fell back to the CPU, when it did. */
  fallback: string | undefined;
}

export interface SelectOptions {
  /** Search the matmul shapes first if this adapter has none cached (ensureTuned; default false). */
  tune?: boolean;
  /** Hears the one line the search says. */
  say?: (line: string) => void;
}

export async function selectEngine(choice: BackendChoice, options: SelectOptions = {}): Promise<SelectedEngine> {
  if (choice === 'cpu') return { engine: new CpuEngine(), device: undefined, fallback: undefined };
  try {
    const device = await openDevice();
    if (options.tune) await ensureTuned(device, options.say);
    return { engine: new GpuEngine(device), device, fallback: undefined };
  } catch (e) {
    if (choice === 'auto' && e instanceof NoAdapterError) return { engine: new CpuEngine(), device: undefined, fallback: e.message };
    throw e;
  }
}

/** An engine for a device or an engine (the library's `fisher(gpu, …)` accepts either). */
export function engineFor(target: Engine | GpuDevice): Engine {
  return 'backend' in target ? target : new GpuEngine(target);
}
