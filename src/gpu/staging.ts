/**
 * Repeated large uploads (a batch of data per step) through staging buffers
 * that are kept and mapped again between uses (wgpu calls this a staging
 * belt).
 *
 * queue.writeBuffer copies its data into a staging buffer of Dawn's; one
 * larger than Dawn's 4 MiB upload ring is a new buffer at every call, which
 * Dawn zero-fills before copying into it. On lavapipe (2 cores, a virtual
 * machine) a batch of 4096 inputs of 784 values, 12.8 MB, so took 18–23 ms
 * of the main thread, most of it the kernel's page faults on fresh memory, while
 * the batch before it computed on the same cores (bench/RESULTS.md, issue
 * 12's seventh part). A belt buffer faults once, when it is created; then
 * an upload is one copy into memory already mapped.
 *
 * An upload's copy is submitted when upload() resolves: after all work
 * submitted before that, and before any submitted after. Where every belt
 * buffer that fits is still being copied from, upload() waits for the
 * oldest (its copy was submitted before anything since, so the wait is
 * bounded by work already queued) rather than hold more memory.
 */

/** Buffers the belt holds at most: one per size of upload repeated at every batch (the inputs, and large targets). */
const BUFFERS = 2;

interface BeltBuffer {
  buffer: GPUBuffer;
  /** Resolves once the buffer is mapped again (false: it is gone, with the device). */
  mapped: Promise<boolean>;
  ready: boolean;
}

export class StagingBelt {
  readonly #device: GPUDevice;
  /** Oldest use first. */
  #buffers: BeltBuffer[] = [];
  #destroyed = false;
  #created = 0;

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** Copies `data` into `buffer` at `offset` (both multiples of 4 bytes, as for writeBuffer). */
  async upload(buffer: GPUBuffer, offset: number, data: ArrayBufferView): Promise<void> {
    const bytes = data.byteLength;
    if (bytes % 4 !== 0 || offset % 4 !== 0) throw new RangeError(`upload to ${buffer.label}: ${bytes} bytes at ${offset}: both must be multiples of 4`);
    if (bytes === 0) return;
    const staging = await this.#take(bytes);
    new Uint8Array(staging.getMappedRange(0, bytes)).set(new Uint8Array(data.buffer, data.byteOffset, bytes));
    staging.unmap();
    const encoder = this.#device.createCommandEncoder({ label: `upload to ${buffer.label}` });
    encoder.copyBufferToBuffer(staging, 0, buffer, offset, bytes);
    this.#device.queue.submit([encoder.finish()]);
    const entry: BeltBuffer = { buffer: staging, ready: false, mapped: Promise.resolve(false) };
    // Mapped again once the copy is done; a lost or destroyed device drops it.
    entry.mapped = staging.mapAsync(GPUMapMode.WRITE).then(
      () => {
        entry.ready = !this.#destroyed;
        if (this.#destroyed) staging.destroy();
        return entry.ready;
      },
      () => {
        this.#buffers = this.#buffers.filter((b) => b !== entry);
        staging.destroy();
        return false;
      },
    );
    this.#buffers.push(entry);
  }

  /** Staging buffers created over the belt's life: one per size of upload in use, if reuse works. */
  get created(): number {
    return this.#created;
  }

  /** Destroys the belt's buffers; those still being copied from go when their mapping ends. */
  destroy(): void {
    this.#destroyed = true;
    for (const b of this.#buffers) if (b.ready) b.buffer.destroy();
    this.#buffers = [];
  }

  /** A mapped buffer of at least `bytes`, taken off the belt: a ready one, the oldest busy one once mapped, or a new one. */
  async #take(bytes: number): Promise<GPUBuffer> {
    for (;;) {
      if (this.#destroyed) throw new Error('the staging belt was destroyed');
      const fits = this.#buffers.filter((b) => b.buffer.size >= bytes);
      const pick = fits.find((b) => b.ready) ?? fits[0];
      if (!pick) break;
      if (!pick.ready) await pick.mapped;
      // Another upload may have taken it while this one waited: then look again.
      if (pick.ready && this.#buffers.includes(pick)) {
        this.#buffers = this.#buffers.filter((b) => b !== pick);
        return pick.buffer;
      }
    }
    // None fits: a new one, and at the most, the smallest held goes (the new one serves what it did).
    if (this.#buffers.length >= BUFFERS) {
      const smallest = this.#buffers.reduce((a, b) => (b.buffer.size < a.buffer.size ? b : a));
      this.#buffers = this.#buffers.filter((b) => b !== smallest);
      void smallest.mapped.then((ready) => ready && smallest.buffer.destroy());
    }
    this.#created++;
    return this.#device.createBuffer({ size: bytes, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true, label: 'staging belt' });
  }
}
