/**
 * A compute kernel: one entry point of a WGSL module, specialised by its
 * overrides, with the bind group layout read from the WGSL. Callers bind
 * buffers by the names the shader declares and pass uniforms by member name;
 * the wrapper checks both against the reflection.
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
  readonly info: EntryInfo;

  private constructor(
    readonly device: GPUDevice,
    readonly spec: KernelSpec,
    readonly pipeline: GPUComputePipeline,
    readonly layout: GPUBindGroupLayout,
  ) {
    this.name = `${spec.family}.${spec.entry}`;
    this.info = entryInfo(spec.source, spec.entry);
  }

  static async create(device: GPUDevice, module: GPUShaderModule, spec: KernelSpec): Promise<ComputeKernel> {
    const info = entryInfo(spec.source, spec.entry);
    const layout = device.createBindGroupLayout({
      label: `${spec.family}.${spec.entry}`,
      entries: info.bindings.map((b) => ({ binding: b.binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: b.kind } })),
    });
    const declared = moduleOverrides(spec.source);
    const constants: Record<string, number> = {};
    for (const [k, v] of Object.entries(spec.overrides ?? {})) {
      if (!declared.includes(k)) throw new Error(`${spec.family}: the WGSL declares no override "${k}"`);
      constants[k] = Number(v);
    }
    const pipeline = await device.createComputePipelineAsync({
      label: `${spec.family}.${spec.entry}`,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: spec.entry, constants },
    });
    return new ComputeKernel(device, spec, pipeline, layout);
  }

  /**
   * Encodes one dispatch. `buffers` names every storage binding the entry
   * uses; `uniforms` every member of its uniform struct. Returns the record
   * of the dispatch; `step.uniformBuffer` supplies the uniform's buffer.
   */
  encode(
    pass: GPUComputePassEncoder,
    step: { uniformBuffer(bytes: ArrayBuffer, label: string): GPUBuffer; record(d: DispatchRecord): void },
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
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, bindGroup);
    if (wg[0] > 0 && wg[1] > 0 && wg[2] > 0) pass.dispatchWorkgroups(...wg);
    const record = { kernel: this.name, workgroups: wg, sizes: uniforms };
    step.record(record);
    if (TRACE_ENABLED) trace(`dispatch ${this.name} wg=[${wg.join(',')}] ${JSON.stringify(uniforms)}`);
  }
}
