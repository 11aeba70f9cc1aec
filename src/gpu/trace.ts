/**
 * The debug switch: FISHER_GPU_DEBUG=1 prints every dispatch (kernel,
 * workgroups, sizes) and every step's wall time to stderr, each line with
 * the milliseconds since the process started (a timeline of the run). When
 * off, the only cost is one boolean test per dispatch.
 */
export const TRACE_ENABLED: boolean = typeof process !== 'undefined' && !!process.env?.['FISHER_GPU_DEBUG'] && process.env['FISHER_GPU_DEBUG'] !== '0';

export function trace(line: string): void {
  if (TRACE_ENABLED) process.stderr.write(`[fisher-gpu ${performance.now().toFixed(0).padStart(6)} ms] ${line}\n`);
}
