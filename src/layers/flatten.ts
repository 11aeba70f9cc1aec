/**
 * flatten: every per-sample dimension into one, row-major (PyTorch's
 * nn.Flatten() with its defaults). Data stay where they are: on the GPU the
 * planner aliases the buffers and runs nothing.
 */
import type { LayerType } from './layer.js';
import { sizeOf, StatelessOp } from './layer.js';

class FlattenOp extends StatelessOp {
  override readonly passThrough = true;
  forward(): void {}
  backward(): void {}
}

export const flatten: LayerType<Record<string, never>> = {
  type: 'flatten',
  keys: [],
  parse: (_raw, ctx) => ({ fields: {}, output: [sizeOf(ctx.input)] }),
  toJson: () => ({ type: 'flatten' }),
  cpu: {
    forward: (_node, _w, x) => ({ y: x }),
    backward: (_node, _w, { dy }, _g, wantDx) => (wantDx ? dy : undefined),
  },
  gpu: (node) => new FlattenOp(node),
};
