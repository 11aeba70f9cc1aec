/**
 * How the command line reports failure: one line on stderr and a non-zero
 * exit, never a stack trace for an error in the input or the device.
 * FISHER_GPU_DEBUG=1 adds the stack.
 */
import { GpuError } from '../gpu/errors.js';
import { SafetensorsError } from '../io/safetensors.js';
import { InputError } from '../layers/errors.js';
import { TrainingDivergedError } from '../train/train.js';

export const EXIT_FAILURE = 1;

/** The one-line message for an error; expected kinds have no prefix but the command's. */
export function describeError(e: unknown): string {
  if (e instanceof InputError || e instanceof SafetensorsError || e instanceof TrainingDivergedError) return e.message;
  if (e instanceof GpuError) return `${e.name}: ${e.message}`;
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err === 'object' && typeof err.code === 'string' && typeof err.message === 'string') {
    // File-system errors already name the path: "ENOENT: no such file or directory, open 'x'".
    return err.message;
  }
  return `internal error: ${e instanceof Error ? e.message : String(e)}`;
}

export function reportError(e: unknown): void {
  process.stderr.write(`fisher: error: ${describeError(e).replace(/\s*\n\s*/g, ' ')}\n`);
  if (process.env['FISHER_GPU_DEBUG'] && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
}
