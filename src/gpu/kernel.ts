/**
 * A compute kernel: one entry point of a WGSL module, specialised by its
 * overrides. Callers bind buffers by the names the shader declares and pass
 * uniforms by member name; the wrapper checks both against the reflection
 * of the WGSL, and the device checks the bind group so made against the
 * layout it derived from the same WGSL.
 */
import { GpuLimitError } from './errors.js';
import { entryInfo, moduleOverrides, packUniform, type EntryInfo } from './reflect.js';
import { trace, TRACE_ENABLED } from './trace.js';

export type Overrides = Readonly<Record<string, number | boolean>>;

export interface KernelSpec {
  /** Family name for messages and labels, e.g. "matmul". */
  family: string;
  source: string;
  entry: string;
  overrides?: Overrides;
}

export type BufferBinding = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** What a step records of each dispatch, for error messages and the debug trace. */
export interface DispatchRecord {
  kernel: string;
  workgroups: [number, number, number];
  sizes: Readonly<Record<string, number>>;
}

export class ComputeKernel {
  readonly name: string;

  private constructor(
    readonly device: GPUDevice,
    readonly spec: KernelSpec,
    readonly info: EntryInfo,
    readonly pipeline: GPUComputePipeline,
    readonly layout: GPUBindGroupLayout,
  ) {
    this.name = `${spec.family}.${spec.entry}`;
  }

  static async create(device: GPUDevice, module: GPUShaderModule, spec: KernelSpec): Promise<ComputeKernel> {
    const label = `${spec.family}.${spec.entry}`;
    const constants: Record<string, number> = {};
    for (const [k, v] of Object.entries(spec.overrides ?? {})) constants[k] = Number(v);
    // The driver builds the pipeline off the main thread while the main thread
    // reflects the WGSL below: wgsl_reflect takes 0.05–0.15 s for matmul.wgsl
    // on lavapipe's 2-core machine, and every build used to wait for it
    // (bench/RESULTS.md, issue 12's sixth part). Hence the layout Dawn
    // derives ('auto'), of the same bindings as the reflection's: a bind
    // group encode() makes from the reflection is checked against it.
    const building = device.createComputePipelineAsync({ label, layout: 'auto', compute: { module, entryPoint: spec.entry, constants } });
    let info: EntryInfo;
    try {
      const declared = await moduleOverrides(spec.source);
      for (const k of Object.keys(constants)) if (!declared.includes(k)) throw new Error(`${spec.family}: the WGSL declares no override "${k}"`);
      info = await entryInfo(spec.source, spec.entry);
    } catch (e) {
      // What the reflection finds wrong is the error to report, not the build's failure.
      building.catch(() => undefined);
      throw e;
    }
    const pipeline = await building;
    return new ComputeKernel(device, spec, info, pipeline, pipeline.getBindGroupLayout(0));
  }

  /**
   * Encodes one dispatch. `buffers` names every storage binding the entry
   * uses; `uniforms` every member of its uniform struct. Returns the record
   * of the dispatch; `step.uniformBuffer` supplies the uniform's buffer.
   */
  encode(
    step: { passFor(kernel: string): GPUComputePassEncoder; uniformBuffer(bytes: ArrayBuffer, label: string): GPUBuffer; record(d: DispatchRecord): void },
    buffers: Readonly<Record<string, BufferBinding>>,
    uniforms: Readonly<Record<string, number>>,
    workgroups: [number, number?, number?],
  ): void {
    const wg: [number, number, number] = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (wg.some((w) => w > max)) throw new GpuLimitError(`${this.name}: dispatch of [${wg.join(', ')}] workgroups exceeds the device's ${max} per dimension`);
    const entries: GPUBindGroupEntry[] = [];
    const given = new Set(Object.keys(buffers));
    for (const b of this.info.bindings) {
      if (b.kind === 'uniform') {
        const bytes = packUniform(this.info.uniform!, uniforms);
        entries.push({ binding: b.binding, resource: { buffer: step.uniformBuffer(bytes, `${this.name}.${b.name}`) } });
        continue;
      }
      const r = buffers[b.name];
      if (!r) throw new Error(`${this.name}: no buffer for binding "${b.name}"`);
      given.delete(b.name);
      entries.push({ binding: b.binding, resource: 'buffer' in r ? r : { buffer: r } });
    }
    if (given.size > 0) throw new Error(`${this.name}: the shader has no binding named ${[...given].join(', ')}`);
    const bindGroup = this.device.createBindGroup({ label: this.name, layout: this.layout, entries });
    const pass = step.passFor(this.name);
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    if (wg[0] > 0 && wg[1] > 0 && wg[2] > 0) pass.dispatchWorkgroups(...wg);
    const record = { kernel: this.name, workgroups: wg, sizes: uniforms };
    step.record(record);
    if (TRACE_ENABLED) trace(`dispatch ${this.name} wg=[${wg.join(',')}] ${JSON.stringify(uniforms)}`);
  }
}
