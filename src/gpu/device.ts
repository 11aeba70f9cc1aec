/**
 * Device acquisition and the runtime around it: the adapter's limits asked
 * for at their maxima, a shader-module and pipeline cache, the buffer pool,
 * steps of dispatches run inside error scopes, reads that fail (never hang)
 * when the device is lost, and dispose() that releases everything so a Node
 * process exits by itself.
 *
 * In Node the device comes from Dawn (the `webgpu` package); where
 * `navigator.gpu` exists (a browser), from there.
 */
import { BufferPool } from './buffers.js';
import { DeviceLostError, GpuError, GpuInternalError, GpuLimitError, GpuOutOfMemoryError, GpuValidationError, NoAdapterError, ShaderError } from './errors.js';
import { ComputeKernel, type DispatchRecord, type KernelSpec } from './kernel.js';
import { pacePolling } from './poll.js';
import { StagingBelt } from './staging.js';
import { GpuTimer, type LabelTime } from './timing.js';
import { trace, TRACE_ENABLED } from './trace.js';

export interface OpenDeviceOptions {
  powerPreference?: GPUPowerPreference;
}

/** The limits fisher-gpu asks for at the adapter's maximum. */
const MAXIMISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupsPerDimension',
] as const;

/** Uploads smaller than this go through queue.writeBuffer: Dawn's 4 MiB upload ring serves them without new memory. */
const BELT_MIN_BYTES = 1 << 20;

/** Optional features used where present. */
const WANTED_FEATURES = ['timestamp-query', 'subgroups', 'shader-f16'] as const;

export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  features: string[];
  limits: Record<string, number>;
  /** Lanes per subgroup, where the adapter reports them (0 where not). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
}

/** One step of work: a command encoder with one compute pass (one per dispatch while timed by kernel). */
export interface Step {
  /** The pass a dispatch of `kernel` is encoded in. */
  passFor(kernel: string): GPUComputePassEncoder;
  readonly encoder: GPUCommandEncoder;
  uniformBuffer(bytes: ArrayBuffer, label: string): GPUBuffer;
  record(d: DispatchRecord): void;
  /** Queues a buffer copy to run after the step's compute pass. */
  copyAfter(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void;
  /**
   * Says that a pipeline this step needs is still being built (its dispatch
   * was left out): the attempt is not submitted, and the step is encoded
   * again once every such build has finished. Pipelines can so be built on
   * first use, while encoding stays synchronous.
   */
  awaitBuild(build: Promise<unknown>): void;
}

// Each retry of a step only waits for builds its previous attempt started, so
// a few suffice; more means a kernel that never becomes ready.
const MAX_STEP_ATTEMPTS = 8;

export class GpuDevice {
  readonly buffers: BufferPool;
  /** Keeps Dawn's GPU object alive as long as the device: if it is collected first, the process crashes. */
  readonly #gpu: GPU;
  /** Ends this device's share of the pacing of Dawn's polling (poll.ts). */
  readonly #releasePolling: () => void;
  readonly #modules = new Map<string, GPUShaderModule>();
  readonly #kernels = new Map<string, Promise<ComputeKernel>>();
  #lostReason: string | undefined;
  readonly #lost: Promise<never>;
  #disposed = false;
  readonly #belt: StagingBelt;
  #timer: GpuTimer | undefined;
  /** The first GPU error no scope caught: every later use of the device fails with it. */
  #uncaptured: GpuError | undefined;

  private constructor(
    gpu: GPU,
    readonly device: GPUDevice,
    readonly adapter: AdapterDescription,
    releasePolling: () => void,
  ) {
    this.#gpu = gpu;
    this.#releasePolling = releasePolling;
    this.buffers = new BufferPool(device);
    this.#belt = new StagingBelt(device);
    this.#lost = device.lost.then((info) => {
      this.#lostReason = this.#disposed ? 'the device was disposed' : `${info.reason}: ${info.message}`;
      throw new DeviceLostError(`GPU device lost (${this.#lostReason})`);
    });
    // Nobody may be waiting on #lost; keep an unobserved rejection quiet.
    this.#lost.catch(() => undefined);
    // Work outside a step (a buffer created or written by hand) has no error scope: its error
    // arrives here. Results computed after it cannot be trusted, so it fails what comes next.
    device.addEventListener('uncapturederror', (ev) => {
      const error = (ev as GPUUncapturedErrorEvent).error;
      const message = `a GPU error outside any step: ${error.message}`;
      const kind = error.constructor?.name;
      this.#uncaptured ??= kind === 'GPUOutOfMemoryError' ? new GpuOutOfMemoryError(message) : kind === 'GPUValidationError' ? new GpuValidationError(message) : new GpuInternalError(message);
    });
  }

  /** Opens the default adapter's device, or throws NoAdapterError saying what to install. */
  static async open(options: OpenDeviceOptions = {}): Promise<GpuDevice> {
    const gpu = await webgpuInstance();
    // Dawn's Node bindings busy-poll while a promise is pending (poll.ts); a browser does not.
    const releasePolling = gpu === (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu ? () => undefined : pacePolling();
    try {
      return await GpuDevice.#open(gpu, options, releasePolling);
    } catch (e) {
      releasePolling();
      throw e;
    }
  }

  static async #open(gpu: GPU, options: OpenDeviceOptions, releasePolling: () => void): Promise<GpuDevice> {
    const adapter = await gpu.requestAdapter(options.powerPreference ? { powerPreference: options.powerPreference } : {});
    if (!adapter) {
      throw new NoAdapterError(
        'no WebGPU adapter found: install a Vulkan driver (without a GPU: Mesa lavapipe 24+, e.g. `sudo bash tools/install-software-gpu.sh` on Debian), or use --backend cpu',
      );
    }
    const requiredLimits: Record<string, number> = {};
    for (const name of MAXIMISED_LIMITS) requiredLimits[name] = adapter.limits[name];
    const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
    const device = await adapter.requestDevice({ requiredLimits, requiredFeatures, label: 'fisher-gpu' });
    const info = adapter.info;
    const limits: Record<string, number> = {};
    for (const name of MAXIMISED_LIMITS) limits[name] = device.limits[name];
    const description: AdapterDescription = {
      vendor: info.vendor,
      architecture: info.architecture,
      device: info.device,
      description: info.description,
      features: [...device.features].sort(),
      limits,
      subgroupMinSize: info.subgroupMinSize ?? 0,
      subgroupMaxSize: info.subgroupMaxSize ?? 0,
    };
    return new GpuDevice(gpu, device, description, releasePolling);
  }

  get limits(): GPUSupportedLimits {
    return this.device.limits;
  }

  /** One line: the adapter's description, vendor and architecture. */
  describe(): string {
    const a = this.adapter;
    const parts = [a.description || a.device, a.vendor, a.architecture].filter((s) => s);
    return parts.join(' / ') || 'unknown adapter';
  }

  /** How many pipelines (an entry point with its overrides) have been asked for on this device: each is built once. */
  get pipelineCount(): number {
    return this.#kernels.size;
  }

  /** A pipeline for one entry point with its overrides, built once and cached. */
  kernel(spec: KernelSpec): Promise<ComputeKernel> {
    const key = `${spec.family}\u0000${spec.entry}\u0000${JSON.stringify(Object.entries(spec.overrides ?? {}).sort())}\u0000${spec.source}`;
    let k = this.#kernels.get(key);
    if (!k) {
      k = this.#buildKernel(spec);
      this.#kernels.set(key, k);
      k.catch(() => this.#kernels.delete(key));
    }
    return k;
  }

  async #buildKernel(spec: KernelSpec): Promise<ComputeKernel> {
    this.#assertAlive();
    let module = this.#modules.get(spec.source);
    if (!module) {
      // The scope keeps a compile error from also being reported as uncaptured.
      this.device.pushErrorScope('validation');
      module = this.device.createShaderModule({ label: spec.family, code: spec.source });
      await this.device.popErrorScope();
      const info = await module.getCompilationInfo();
      const errors = info.messages.filter((m) => m.type === 'error');
      if (errors.length > 0) {
        throw new ShaderError(`${spec.family}: WGSL does not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join('; ')}`);
      }
      this.#modules.set(spec.source, module);
    }
    try {
      const t0 = TRACE_ENABLED ? performance.now() : 0;
      const kernel = await ComputeKernel.create(this.device, module, spec);
      if (TRACE_ENABLED) trace(`pipeline ${spec.family}.${spec.entry} ${JSON.stringify(spec.overrides ?? {})} built in ${(performance.now() - t0).toFixed(1)} ms`);
      return kernel;
    } catch (e) {
      throw new ShaderError(`${spec.family}.${spec.entry} ${JSON.stringify(spec.overrides ?? {})}: pipeline creation failed: ${(e as Error).message}`);
    }
  }

  /**
   * Runs one step: `encode` records dispatches into a compute pass; the step
   * is submitted inside validation, out-of-memory and internal error scopes,
   * and any error is thrown typed, naming the step and its dispatches. Where
   * `encode` waits for pipeline builds (Step.awaitBuild), it runs again once
   * they are done, and only the complete attempt is submitted: `encode` must
   * only encode (no counters, no buffer writes), so that running it twice is
   * harmless.
   */
  async step<T>(label: string, encode: (step: Step) => T): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const { result, builds } = await this.#attempt(label, encode);
      if (builds.length === 0) return result as T;
      if (attempt === MAX_STEP_ATTEMPTS) throw new GpuInternalError(`${label}: pipelines still not ready after ${attempt} attempts`);
      await Promise.all(builds);
    }
  }

  /** One attempt at a step: submitted unless it waits for pipeline builds, which it returns. */
  async #attempt<T>(label: string, encode: (step: Step) => T): Promise<{ result: T | undefined; builds: Promise<unknown>[] }> {
    this.#assertAlive();
    const device = this.device;
    const records: DispatchRecord[] = [];
    const uniforms: GPUBuffer[] = [];
    const copies: [GPUBuffer, number, GPUBuffer, number, number][] = [];
    const builds: Promise<unknown>[] = [];
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('internal');
    let result: T | undefined;
    let thrown: unknown;
    const t0 = TRACE_ENABLED ? performance.now() : 0;
    const timer = this.#timer;
    const mark = timer?.mark ?? 0;
    let pass: GPUComputePassEncoder | undefined;
    try {
      const encoder = device.createCommandEncoder({ label });
      const open = (passLabel: string) => {
        const timestampWrites = timer?.nextPass(passLabel);
        return encoder.beginComputePass(timestampWrites ? { label: passLabel, timestampWrites } : { label: passLabel });
      };
      // Timed by kernel, each dispatch gets a pass of its own, opened as it is encoded.
      const perDispatch = timer?.perDispatch ?? false;
      if (!perDispatch) pass = open(label);
      const step: Step = {
        passFor: (kernel) => {
          if (!perDispatch) return pass!;
          pass?.end();
          return (pass = open(kernel));
        },
        encoder,
        uniformBuffer: (bytes, ulabel) => {
          const b = device.createBuffer({ size: bytes.byteLength, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true, label: ulabel });
          new Uint8Array(b.getMappedRange()).set(new Uint8Array(bytes));
          b.unmap();
          uniforms.push(b);
          return b;
        },
        record: (d) => records.push(d),
        copyAfter: (...c) => copies.push(c),
        awaitBuild: (build) => builds.push(build),
      };
      try {
        result = encode(step);
      } finally {
        pass?.end();
      }
      // An attempt that waits for builds is dropped unsubmitted, and its passes untimed.
      if (builds.length > 0) timer?.discard(mark);
      if (builds.length === 0) {
        for (const c of copies) if (c[4] > 0) encoder.copyBufferToBuffer(...c);
        device.queue.submit([encoder.finish()]);
      }
    } catch (e) {
      thrown = e;
    }
    const [internal, oom, validation] = await Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]);
    // Destroying after submit is allowed: the buffers live until the queued work is done.
    for (const b of uniforms) b.destroy();
    if (TRACE_ENABLED) trace(`step ${label}: ${records.length} dispatches encoded in ${(performance.now() - t0).toFixed(2)} ms${builds.length ? `, waiting for ${builds.length} pipeline builds` : ''}`);
    const what = () => `${label} [${records.map((r) => `${r.kernel} ${JSON.stringify(r.sizes)}`).join('; ')}]`;
    if (validation) throw new GpuValidationError(`${what()}: ${validation.message}`);
    if (oom) throw new GpuOutOfMemoryError(`${what()}: out of device memory: ${oom.message}`);
    if (internal) throw new GpuInternalError(`${what()}: ${internal.message}`);
    if (thrown) throw thrown;
    return { result, builds };
  }

  /** A storage buffer from the pool, filled with `data` when given; allocation failures throw typed. */
  async storage(bytes: number, label: string, data?: ArrayBufferView): Promise<GPUBuffer> {
    this.#assertAlive();
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (bytes > max) throw new GpuLimitError(`${label}: ${bytes} bytes exceed the device's ${max}-byte storage binding limit`);
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.buffers.acquire(bytes, usage, label);
    const [oom, validation] = [await this.device.popErrorScope(), await this.device.popErrorScope()];
    if (oom || validation) {
      this.buffers.release(buffer);
      this.buffers.trim();
      if (oom) throw new GpuOutOfMemoryError(`${label}: out of device memory allocating ${bytes} bytes`);
      throw new GpuValidationError(`${label}: allocating ${bytes} bytes: ${validation!.message}`);
    }
    if (data) this.write(buffer, data);
    return buffer;
  }

  /** A storage buffer from the pool, zeroed on the device (no host memory copied). */
  async zeros(bytes: number, label: string): Promise<GPUBuffer> {
    const buffer = await this.storage(bytes, label);
    const encoder = this.device.createCommandEncoder({ label: `zero ${label}` });
    encoder.clearBuffer(buffer);
    this.device.queue.submit([encoder.finish()]);
    return buffer;
  }

  /** Writes `data` into `buffer` at `offset`: work submitted after the call sees it (queue.writeBuffer). */
  write(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): void {
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * Writes `data` into `buffer` at `offset` as write() does, for uploads
   * repeated at every batch: large ones reuse staging memory (staging.ts)
   * and may wait for it. Work submitted after the promise resolves sees the
   * data; work submitted before, may not.
   */
  async upload(buffer: GPUBuffer, data: ArrayBufferView, offset = 0): Promise<void> {
    this.#assertAlive();
    if (data.byteLength < BELT_MIN_BYTES) return this.write(buffer, data, offset);
    const t0 = TRACE_ENABLED ? performance.now() : 0;
    await this.#belt.upload(buffer, offset, data);
    if (TRACE_ENABLED) trace(`upload of ${data.byteLength} bytes to ${buffer.label} in ${(performance.now() - t0).toFixed(1)} ms`);
  }

  /** Reads `bytes` bytes of `buffer` from `offset` as float32. */
  async readF32(buffer: GPUBuffer, bytes: number, offset = 0): Promise<Float32Array> {
    this.#assertAlive();
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({ size: Math.max(4, size), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `read ${buffer.label}` });
    try {
      const encoder = this.device.createCommandEncoder();
      if (size > 0) encoder.copyBufferToBuffer(buffer, offset, staging, 0, size);
      this.device.queue.submit([encoder.finish()]);
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.#lost]);
      return new Float32Array(staging.getMappedRange().slice(0, size));
    } catch (e) {
      if (e instanceof GpuError) throw e;
      if (this.#lostReason) throw new DeviceLostError(`GPU device lost (${this.#lostReason}) while reading ${buffer.label}`);
      throw new GpuInternalError(`reading ${buffer.label}: ${(e as Error).message}`);
    } finally {
      staging.destroy();
    }
  }

  /** Waits until the queue has finished all submitted work. */
  async finish(): Promise<void> {
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.#lost]);
    this.#assertAlive();
  }

  /** Whether passes can be timed on the device (the `timestamp-query` feature). */
  get canTime(): boolean {
    return this.device.features.has('timestamp-query');
  }

  /**
   * Runs `work` with every step's pass timed on the device; returns its
   * result with the summed GPU time in seconds (undefined where the adapter
   * has no timestamp queries). `byKernel`: each dispatch runs in a pass of
   * its own, and `kernels` gives the time per kernel entry point, longest
   * first (the passes' boundaries cost a little time of their own).
   */
  async timed<T>(work: () => Promise<T>, options: { byKernel?: boolean } = {}): Promise<{ result: T; gpuSeconds: number | undefined; kernels?: LabelTime[] }> {
    if (!this.canTime || this.#timer) return { result: await work(), gpuSeconds: undefined };
    const timer = new GpuTimer(this.device, options.byKernel ?? false);
    this.#timer = timer;
    try {
      const result = await work();
      this.#timer = undefined;
      const times = await timer.stop();
      return { result, gpuSeconds: times?.seconds, ...(options.byKernel && times ? { kernels: times.labels } : {}) };
    } finally {
      this.#timer = undefined;
    }
  }

  /** Releases every buffer and the device. Safe to call twice. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.buffers.dispose();
    this.#belt.destroy();
    this.#kernels.clear();
    this.#modules.clear();
    this.device.destroy();
    this.#releasePolling();
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /** Dawn's GPU object, held for the device's lifetime. */
  get gpu(): GPU {
    return this.#gpu;
  }

  #assertAlive(): void {
    if (this.#disposed) throw new DeviceLostError('the GPU device was disposed');
    if (this.#lostReason) throw new DeviceLostError(`GPU device lost (${this.#lostReason})`);
    if (this.#uncaptured) throw this.#uncaptured;
  }
}

/**
 * The WebGPU entry object: navigator.gpu where it exists; else Dawn's Node
 * bindings (its GPUBufferUsage and other globals installed as in a
 * browser). Keep the object for as long as anything made from it lives.
 */
export async function webgpuInstance(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  let dawn: { create(flags: string[]): GPU; globals: object };
  try {
    dawn = (await import('webgpu')) as unknown as typeof dawn;
  } catch (e) {
    throw new NoAdapterError(`the "webgpu" package (Dawn for Node) did not load: ${(e as Error).message}`);
  }
  // GPUBufferUsage, GPUMapMode, … as globals, as in a browser.
  for (const [k, v] of Object.entries(dawn.globals)) if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  return dawn.create(DAWN_FLAGS);
}

/**
 * Dawn rounds timestamp queries down to multiples of 65,536 ns unless told
 * otherwise (a browser's defence against timing attacks, which a Node
 * process has no use for). On a real GPU a kernel of this library's
 * workloads takes tens of microseconds: quantized, the tuner's scores and
 * the benchmark's GPU times would be 0 or 65.5 µs steps.
 */
export const DAWN_FLAGS = ['disable-dawn-features=timestamp_quantization'];

/** Opens a GPU device (Dawn in Node, navigator.gpu in a browser). */
export function openDevice(options: OpenDeviceOptions = {}): Promise<GpuDevice> {
  return GpuDevice.open(options);
}
