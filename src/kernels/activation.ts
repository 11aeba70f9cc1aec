/**
 * shaders/activation.wgsl: a library of activation functions (no entry
 * points) that kernels are composed with. The codes the kernels switch on
 * are read from its ACT_* constants, so they are numbered in one place.
 */
import { u32Constant } from '../gpu/reflect.js';
import source from '../../shaders/activation.wgsl';

export const ACTIVATION_WGSL: string = source;

/** The WGSL code of an activation, e.g. "gelu" → ACT_GELU. */
export function activationCode(name: string): number {
  return u32Constant(source, `ACT_${name.toUpperCase()}`);
}

/** Added to a code where a backward epilogue reads the activation's output in place of z (activation.wgsl). */
const AT_OUTPUT = u32Constant(source, 'ACT_AT_OUTPUT');

/** The codes whose derivative is a function of the output: the cases of activation.wgsl's derivative_at_output. */
const FROM_OUTPUT: ReadonlySet<number> = (() => {
  const body = /fn derivative_at_output\([^]*?\n}/.exec(source);
  if (!body) throw new Error('activation.wgsl has no derivative_at_output');
  return new Set([...body[0].matchAll(/case (ACT_\w+)/g)].map((m) => u32Constant(source, m[1]!)));
})();

/**
 * The backward code of an activation and whether it reads the output: the
 * code with ACT_AT_OUTPUT added where the derivative is a function of the
 * output (ReLU, tanh, sigmoid), so that z need not be kept; the code as it
 * is (GELU).
 */
export function derivativeCode(code: number): { code: number; atOutput: boolean } {
  return FROM_OUTPUT.has(code) ? { code: code + AT_OUTPUT, atOutput: true } : { code, atOutput: false };
}
