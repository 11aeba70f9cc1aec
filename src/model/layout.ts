/**
 * The parameter layout: where each parameter tensor sits in the flat
 * parameter vector θ ∈ R^P (DESIGN.md §1). Layer by layer in spec order
 * (nested layers where they stand), each layer's weight row-major in
 * PyTorch's layout, then its bias: the order of PyTorch's
 * `named_parameters()`. Every other module derives offsets from here.
 */
import type { LayerNode } from '../layers/layer.js';
import { sizeOf } from '../layers/layer.js';
import { walkLayers } from '../layers/registry.js';

export interface ParameterEntry {
  /** Tensor name, e.g. "fc1.weight". */
  name: string;
  /** Index of its layer in `layers`. */
  layer: number;
  role: 'weight' | 'bias';
  shape: number[];
  offset: number;
  size: number;
}

/** A parametrised layer's block of θ: its parameters, contiguous. */
export interface LayerSlice {
  node: LayerNode;
  name: string;
  offset: number;
  /** P_l, the size of the block. */
  size: number;
}

export interface ParameterLayout {
  entries: ParameterEntry[];
  layers: LayerSlice[];
  /** P, the number of parameters. */
  total: number;
}

export function parameterLayout(nodes: readonly LayerNode[]): ParameterLayout {
  const entries: ParameterEntry[] = [];
  const layers: LayerSlice[] = [];
  let offset = 0;
  for (const node of walkLayers(nodes)) {
    if (node.parameters.length === 0) continue;
    const start = offset;
    for (const p of node.parameters) {
      const size = sizeOf(p.shape);
      entries.push({ name: `${node.name}.${p.role}`, layer: layers.length, role: p.role, shape: [...p.shape], offset, size });
      offset += size;
    }
    layers.push({ node, name: node.name!, offset: start, size: offset - start });
  }
  return { entries, layers, total: offset };
}

/** The θ offset of each parametrised node, by node. */
export function layerOffsets(layout: ParameterLayout): Map<LayerNode, number> {
  return new Map(layout.layers.map((l) => [l.node, l.offset]));
}
