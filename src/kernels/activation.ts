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
