/**
 * GPU time from timestamp queries: while a timer runs, every compute pass a
 * step encodes writes a timestamp at its start and end, labelled; stop()
 * resolves them and returns the summed durations, in all and by label. Only
 * where the adapter has the `timestamp-query` feature; wall time is measured
 * by the caller regardless.
 */
// WebGPU allows at most 4096 queries in a set: two per pass. More passes take more sets.
const PASSES_PER_SET = 2048;
// Beyond this many passes (a set is 32 KiB of queries) the timer gives up and says so.
const MAX_SETS = 64;

/** The time of the passes of one label. */
export interface LabelTime {
  label: string;
  seconds: number;
  passes: number;
}

export interface PassTimes {
  /** Every timed pass's duration, summed. */
  seconds: number;
  /** By label, longest first. */
  labels: LabelTime[];
}

export class GpuTimer {
  readonly #device: GPUDevice;
  readonly #sets: GPUQuerySet[] = [];
  /** The label of every pass handed out, by index. */
  readonly #labels: string[] = [];
  #overflow = false;

  /**
   * `perDispatch`: the steps encode each dispatch in a pass of its own,
   * labelled by its kernel, rather than one pass per step labelled by the step.
   */
  constructor(
    device: GPUDevice,
    readonly perDispatch = false,
  ) {
    this.#device = device;
  }

  /** The timestampWrites for the next pass, or undefined once the timer is full. */
  nextPass(label: string): GPUComputePassTimestampWrites | undefined {
    const k = this.#labels.length;
    const set = Math.floor(k / PASSES_PER_SET);
    if (set >= MAX_SETS) {
      this.#overflow = true;
      return undefined;
    }
    if (set === this.#sets.length) this.#sets.push(this.#device.createQuerySet({ type: 'timestamp', count: 2 * PASSES_PER_SET, label: 'timer' }));
    this.#labels.push(label);
    const i = k % PASSES_PER_SET;
    return { querySet: this.#sets[set]!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** How many passes were handed out: a mark to `discard` back to. */
  get mark(): number {
    return this.#labels.length;
  }

  /** Forgets the passes handed out since `mark` (an attempt that was never submitted); their queries are reused. */
  discard(mark: number): void {
    this.#labels.length = Math.min(this.#labels.length, mark);
  }

  /** The timed passes' durations; undefined if some passes went untimed. */
  async stop(): Promise<PassTimes | undefined> {
    const n = this.#labels.length;
    try {
      if (this.#overflow) return undefined;
      if (n === 0) return { seconds: 0, labels: [] };
      const bytes = 2 * n * 8;
      const resolve = this.#device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      const read = this.#device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      const encoder = this.#device.createCommandEncoder();
      this.#sets.forEach((set, s) => {
        const count = 2 * Math.min(PASSES_PER_SET, n - s * PASSES_PER_SET);
        encoder.resolveQuerySet(set, 0, count, resolve, s * 2 * PASSES_PER_SET * 8);
      });
      encoder.copyBufferToBuffer(resolve, 0, read, 0, bytes);
      this.#device.queue.submit([encoder.finish()]);
      await read.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(read.getMappedRange().slice(0));
      read.destroy();
      resolve.destroy();
      let total = 0n;
      const byLabel = new Map<string, { ns: bigint; passes: number }>();
      for (let k = 0; k < n; k++) {
        const ns = t[2 * k + 1]! > t[2 * k]! ? t[2 * k + 1]! - t[2 * k]! : 0n;
        total += ns;
        const entry = byLabel.get(this.#labels[k]!) ?? { ns: 0n, passes: 0 };
        entry.ns += ns;
        entry.passes++;
        byLabel.set(this.#labels[k]!, entry);
      }
      const labels = [...byLabel].map(([label, e]) => ({ label, seconds: Number(e.ns) / 1e9, passes: e.passes })).sort((a, b) => b.seconds - a.seconds);
      return { seconds: Number(total) / 1e9, labels };
    } finally {
      for (const set of this.#sets) set.destroy();
    }
  }
}
