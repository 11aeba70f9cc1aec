/**
 * The debug switch: FISHER_GPU_DEBUG=1 prints every dispatch (kernel,
 * workgroups, sizes) and every step's wall time to stderr. When off, the
 * only cost is one boolean test per dispatch.
 */
export const TRACE_ENABLED: boolean = typeof process !== 'undefined' && !!process.env?.['FISHER_GPU_DEBUG'] && process.env['FISHER_GPU_DEBUG'] !== '0';

export function trace(line: string): void {
  if (TRACE_ENABLED) process.stderr.write(`[fisher-gpu] ${line}\n`);
}
