/**
 * shaders/probe.wgsl: the device's peak arithmetic throughput (independent
 * vec4 FMAs) and memory bandwidth (a vec4 copy), measured the way the
 * benchmark measures everything else.
 */
import type { GpuDevice, Step } from '../gpu/device.js';
import type { ComputeKernel } from '../gpu/kernel.js';
import { grid, groups } from './dispatch.js';
import { WG } from './family.js';
import source from '../../shaders/probe.wgsl';

export const PROBE_WGSL: string = source;
/** FLOP per invocation per round: 8 chains × vec4 × (multiply + add). */
const FLOP_PER_ROUND = 64;

export interface ProbeRun {
  /** Seconds on the device (timestamp queries) where available, else wall seconds. */
  seconds: number;
  /** FLOP done or bytes moved. */
  work: number;
}

export class Probe {
  private constructor(
    readonly gpu: GpuDevice,
    readonly fma: ComputeKernel,
    readonly copyKernel: ComputeKernel,
  ) {}

  static async create(gpu: GpuDevice): Promise<Probe> {
    const [fma, copy] = await Promise.all(['fma_throughput', 'copy'].map((entry) => gpu.kernel({ family: 'probe', source, entry, overrides: { WG } })));
    return new Probe(gpu, fma!, copy!);
  }

  async #time(encode: (step: Step) => void): Promise<number> {
    const t0 = performance.now();
    const { gpuSeconds } = await this.gpu.timed(async () => {
      await this.gpu.step('probe', encode);
      await this.gpu.finish();
    });
    return gpuSeconds || (performance.now() - t0) / 1000;
  }

  /** `invocations` × `iterations` rounds of 64 FLOP. */
  async fmaThroughput(invocations: number, iterations: number): Promise<ProbeRun> {
    const out = await this.gpu.storage(invocations * 16, 'probe out');
    try {
      const seconds = await this.#time((step) =>
        this.fma.encode(step, { dst: out }, { iterations, count: 0, seed: 1.5 }, [groups(invocations, WG)]),
      );
      return { seconds, work: invocations * iterations * FLOP_PER_ROUND };
    } finally {
      this.gpu.buffers.release(out);
    }
  }

  /** Copies `bytes` (a multiple of 16); work counts the bytes read plus written. */
  async copy(bytes: number): Promise<ProbeRun> {
    const count = Math.floor(bytes / 16);
    const src = await this.gpu.storage(count * 16, 'probe src', new Float32Array(count * 4).fill(1));
    const dst = await this.gpu.storage(count * 16, 'probe dst');
    try {
      const seconds = await this.#time((step) =>
        this.copyKernel.encode(step, { src, dst }, { iterations: 0, count, seed: 0 }, grid(count, WG, this.gpu.limits.maxComputeWorkgroupsPerDimension)),
      );
      return { seconds, work: 2 * count * 16 };
    } finally {
      this.gpu.buffers.release(src);
      this.gpu.buffers.release(dst);
    }
  }
}
