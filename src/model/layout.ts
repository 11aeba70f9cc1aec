/**
 * The parameter layout: where each layer's weight and bias sit in the flat
 * parameter vector θ ∈ R^P (DESIGN.md §1). Layer by layer, each layer's
 * weight row-major in PyTorch's [out, in] layout (element [o, i] at
 * offset + o·in + i), then its bias [out]: the order of PyTorch's
 * `named_parameters()`. Every other module derives offsets from here.
 */
import type { LinearLayer } from './spec.js';

export interface ParameterEntry {
  /** Tensor name, e.g. "fc1.weight". */
  name: string;
  layer: number;
  role: 'weight' | 'bias';
  shape: number[];
  offset: number;
  size: number;
}

export interface LayerSlice {
  /** Offset of W[0, 0]; the bias follows at weightOffset + out·in. */
  weightOffset: number;
  biasOffset: number;
  /** out·(in + 1): the size of the layer's block of θ. */
  size: number;
}

export interface ParameterLayout {
  entries: ParameterEntry[];
  layers: LayerSlice[];
  /** P, the number of parameters. */
  total: number;
}

export function parameterLayout(layers: readonly LinearLayer[]): ParameterLayout {
  const entries: ParameterEntry[] = [];
  const slices: LayerSlice[] = [];
  let offset = 0;
  layers.forEach((l, layer) => {
    const weightOffset = offset;
    entries.push({ name: `${l.name}.weight`, layer, role: 'weight', shape: [l.out, l.in], offset, size: l.out * l.in });
    offset += l.out * l.in;
    const biasOffset = offset;
    entries.push({ name: `${l.name}.bias`, layer, role: 'bias', shape: [l.out], offset, size: l.out });
    offset += l.out;
    slices.push({ weightOffset, biasOffset, size: l.out * (l.in + 1) });
  });
  return { entries, layers: slices, total: offset };
}
