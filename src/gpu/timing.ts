/**
 * GPU time from timestamp queries: while a timer runs, every step's compute
 * pass writes a timestamp at its start and end; stop() resolves them and
 * returns the summed pass durations. Only where the adapter has the
 * `timestamp-query` feature; wall time is measured by the caller regardless.
 */
// WebGPU allows at most 4096 queries in a set: two per pass.
const MAX_PASSES = 2048;

export class GpuTimer {
  readonly #device: GPUDevice;
  readonly #querySet: GPUQuerySet;
  #passes = 0;
  #overflow = false;

  constructor(device: GPUDevice) {
    this.#device = device;
    this.#querySet = device.createQuerySet({ type: 'timestamp', count: 2 * MAX_PASSES, label: 'timer' });
  }

  /** The timestampWrites for the next pass, or undefined once the query set is full. */
  nextPass(): GPUComputePassTimestampWrites | undefined {
    if (this.#passes >= MAX_PASSES) {
      this.#overflow = true;
      return undefined;
    }
    const k = this.#passes++;
    return { querySet: this.#querySet, beginningOfPassWriteIndex: 2 * k, endOfPassWriteIndex: 2 * k + 1 };
  }

  /** Sum of the timed passes' durations in seconds; undefined if some passes went untimed. */
  async stop(): Promise<number | undefined> {
    const n = this.#passes;
    try {
      if (this.#overflow) return undefined;
      if (n === 0) return 0;
      const bytes = 2 * n * 8;
      const resolve = this.#device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = this.#device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = this.#device.createCommandEncoder();
      encoder.resolveQuerySet(this.#querySet, 0, 2 * n, resolve, 0);
      encoder.copyBufferToBuffer(resolve, 0, read, 0, bytes);
      this.#device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.destroy();
      resolve.destroy();
      let ns = 0n;
      for (let k = 0; k < n; k++) if (t[2 * k + 1]! > t[2 * k]!) ns += t[2 * k + 1]! - t[2 * k]!;
      return Number(ns) / 1e9;
    } finally {
      this.#querySet.destroy();
    }
  }
}
