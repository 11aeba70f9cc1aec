/**
 * The one list of layer types. A new type is its own module and one entry
 * here; parsing, naming, JSON and lookup are derived from the list.
 */
import { activations } from './activation.js';
import { conv2d } from './conv2d.js';
import { InputError } from './errors.js';
import { isRecord } from './fields.js';
import { flatten } from './flatten.js';
import type { KroneckerGeometry, LayerNode, LayerType, ParseContext, Shape } from './layer.js';
import { layernorm } from './layernorm.js';
import { linear } from './linear.js';
import { avgpool2d, maxpool2d } from './pool2d.js';
import { residual } from './residual.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- each entry has its own field type
export const LAYER_TYPES: readonly LayerType<any>[] = [linear, conv2d, maxpool2d, avgpool2d, flatten, layernorm, residual, ...activations];

export const LAYER_TYPE_NAMES: readonly string[] = LAYER_TYPES.map((t) => t.type);

const BY_NAME = new Map(LAYER_TYPES.map((t) => [t.type, t]));

/** The type of a parsed node. */
export function layerTypeOf(node: LayerNode): LayerType<unknown> {
  const t = BY_NAME.get(node.type);
  if (!t) throw new Error(`no layer type "${node.type}"`);
  return t as LayerType<unknown>;
}

/** How K-FAC factors this parametrised node, or undefined where it carries its exact diagonal instead. */
export function kroneckerGeometry(node: LayerNode): KroneckerGeometry | undefined {
  return layerTypeOf(node).kronecker?.geometry(node);
}

const NAME_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * Parses a network's list of layers applied to per-sample inputs of shape
 * `input`; `source` names the spec in errors. Names are unique over the
 * whole network; unnamed parametrised layers get `fc1`, `conv1`, `norm1`, …
 */
export function parseLayerList(raw: unknown, source: string, input: Shape): LayerNode[] {
  const used = new Set<string>();
  const counters = new Map<string, number>();

  const parse = (list: unknown, where: string, shape: Shape): LayerNode[] => {
    if (!Array.isArray(list)) throw new InputError(`${where} must be a list of layers`);
    const nodes: LayerNode[] = [];
    list.forEach((rawLayer, index) => {
      const at = `${where}[${index}]`;
      if (!isRecord(rawLayer) || typeof rawLayer['type'] !== 'string') throw new InputError(`${at} must be an object with a "type"`);
      const type = BY_NAME.get(rawLayer['type']);
      if (!type) throw new InputError(`${at}: unknown layer type "${rawLayer['type']}" (known: ${LAYER_TYPE_NAMES.join(', ')})`);
      const unknown = Object.keys(rawLayer).filter((k) => k !== 'type' && !type.keys.includes(k));
      if (unknown.length > 0) {
        throw new InputError(`${at}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')} for ${type.type} (known: ${['type', ...type.keys].join(', ')})`);
      }
      const ctx: ParseContext = {
        where: `${at} ${type.type}`,
        input: shape,
        name(value, prefix) {
          let name = value;
          if (name === undefined) {
            const k = (counters.get(prefix) ?? 0) + 1;
            counters.set(prefix, k);
            name = `${prefix}${k}`;
          }
          if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw new InputError(`${at}: name ${JSON.stringify(name)} is not a valid tensor name`);
          if (used.has(name)) throw new InputError(`${at}: layer name "${name}" is used twice`);
          used.add(name);
          return name;
        },
        layers: parse,
      };
      const parsed = type.parse(rawLayer, ctx);
      const node: LayerNode = {
        type: type.type,
        name: parsed.name,
        fields: parsed.fields,
        input: shape,
        output: parsed.output,
        parameters: parsed.parameters ?? [],
        children: parsed.children ?? [],
      };
      nodes.push(node);
      shape = node.output;
    });
    return nodes;
  };
  return parse(raw, `${source}: layers`, input);
}

/** A node back as its JSON spec, nested layers included. */
export function layerToJson(node: LayerNode): Record<string, unknown> {
  const json = layerTypeOf(node).toJson(node);
  return node.children.length > 0 || node.type === 'residual' ? { ...json, layers: node.children.map(layerToJson) } : json;
}

/** Every node of a list, depth first in spec order: the parameter order. */
export function* walkLayers(nodes: readonly LayerNode[]): Generator<LayerNode> {
  for (const node of nodes) {
    yield node;
    yield* walkLayers(node.children);
  }
}
