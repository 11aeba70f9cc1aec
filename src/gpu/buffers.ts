/**
 * The buffer pool: storage buffers are reused by (size, usage) instead of
 * being created per batch, and every byte the pool holds is accounted, so a
 * benchmark can report the peak device memory of a workload.
 */
export interface PoolStats {
  /** Bytes held now, in use or free for reuse. */
  current: number;
  /** The most bytes held at once since creation or the last resetPeak(). */
  peak: number;
  /** Buffers created over the pool's life. */
  created: number;
}

export class BufferPool {
  readonly #device: GPUDevice;
  readonly #free = new Map<string, GPUBuffer[]>();
  readonly #all = new Set<GPUBuffer>();
  #current = 0;
  #peak = 0;
  #created = 0;

  constructor(device: GPUDevice) {
    this.#device = device;
  }

  /** A buffer of at least `size` bytes (rounded up to 16) with `usage`. */
  acquire(size: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const bytes = Math.max(16, Math.ceil(size / 16) * 16);
    const key = `${bytes}:${usage}`;
    const reused = this.#free.get(key)?.pop();
    if (reused) return reused;
    const buffer = this.#device.createBuffer({ size: bytes, usage, label });
    this.#all.add(buffer);
    this.#created++;
    this.#current += bytes;
    this.#peak = Math.max(this.#peak, this.#current);
    return buffer;
  }

  /** Returns a buffer for reuse. */
  release(buffer: GPUBuffer): void {
    if (!this.#all.has(buffer)) throw new Error(`buffer "${buffer.label}" does not belong to this pool`);
    const key = `${buffer.size}:${buffer.usage}`;
    let list = this.#free.get(key);
    if (!list) this.#free.set(key, (list = []));
    if (!list.includes(buffer)) list.push(buffer);
  }

  /** Destroys the free buffers. */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) this.#destroy(b);
    }
    this.#free.clear();
  }

  stats(): PoolStats {
    return { current: this.#current, peak: this.#peak, created: this.#created };
  }

  resetPeak(): void {
    this.#peak = this.#current;
  }

  /** Destroys every buffer the pool ever gave out. */
  dispose(): void {
    for (const b of [...this.#all]) this.#destroy(b);
    this.#free.clear();
  }

  #destroy(b: GPUBuffer): void {
    if (!this.#all.delete(b)) return;
    this.#current -= b.size;
    b.destroy();
  }
}
