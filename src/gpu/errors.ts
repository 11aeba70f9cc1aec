/**
 * Typed GPU errors. Each says what was being done (the step and its
 * dispatches, with their sizes), so that a failure names the kernel at fault.
 */
export class GpuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** No WebGPU adapter: no driver, or a driver Dawn does not accept. */
export class NoAdapterError extends GpuError {}

/** A WGSL module failed to compile or a pipeline failed to build. */
export class ShaderError extends GpuError {}

/** The device rejected a call (a bug in the host code: a binding, a size). */
export class GpuValidationError extends GpuError {}

/** The device ran out of memory. */
export class GpuOutOfMemoryError extends GpuError {}

/** The implementation failed internally. */
export class GpuInternalError extends GpuError {}

/** The device was lost (driver reset, destroyed, or disposed). */
export class DeviceLostError extends GpuError {}

/** A request exceeds what the device allows (binding size, buffer size, dispatch count). */
export class GpuLimitError extends GpuError {}
