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
export interface LayerBlock {
  name: string;
  offset: number;
  /** P_l, the size of the block. */
  size: number;
}

/** A layer's block with the layer it comes from. */
export interface LayerSlice extends LayerBlock {
  node: LayerNode;
}

/**
 * θ's tensors and its layers' blocks, as a Fisher file records them: all a
 * Fisher's operations need, without the layers' specs.
 */
export interface TensorLayout {
  entries: ParameterEntry[];
  layers: LayerBlock[];
  /** P, the number of parameters. */
  total: number;
}

export interface ParameterLayout extends TensorLayout {
  layers: LayerSlice[];
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

/**
 * The layout of parameters listed in θ order (a Fisher file's metadata):
 * a layer is the run of consecutive tensors that share the name before
 * their last dot ("conv1" of "conv1.weight", "conv1.bias").
 */
export function tensorLayout(parameters: readonly { name: string; shape: readonly number[] }[]): TensorLayout {
  const entries: ParameterEntry[] = [];
  const layers: LayerBlock[] = [];
  let offset = 0;
  for (const p of parameters) {
    const dot = p.name.lastIndexOf('.');
    const layer = dot < 0 ? p.name : p.name.slice(0, dot);
    const suffix = dot < 0 ? '' : p.name.slice(dot + 1);
    if (layers.length === 0 || layers[layers.length - 1]!.name !== layer) layers.push({ name: layer, offset, size: 0 });
    const size = sizeOf(p.shape);
    entries.push({ name: p.name, layer: layers.length - 1, role: suffix === 'bias' ? 'bias' : 'weight', shape: [...p.shape], offset, size });
    layers[layers.length - 1]!.size += size;
    offset += size;
  }
  return { entries, layers, total: offset };
}

/** The θ offset of each parametrised node, by node. */
export function layerOffsets(layout: ParameterLayout): Map<LayerNode, number> {
  return new Map(layout.layers.map((l) => [l.node, l.offset]));
}
