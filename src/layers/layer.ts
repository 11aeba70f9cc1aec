/**
 * What a layer type is (DESIGN.md §2): a family with its spec fields and
 * their validation, its output shape, its parameters, its float64 CPU twin
 * and its GPU op. Each type lives in one module of this folder and is listed
 * once in registry.ts; nothing else in the library names a layer type.
 *
 * Conventions, for every layer module:
 * - shapes are per sample and row-major, without the batch dimension:
 *   [D], [T, D], [C, H, W];
 * - s (or n) indexes samples, t the positions that share a layer's
 *   parameters, o its outputs, i its inputs;
 * - a layer's parameters are its weight then its bias, each in PyTorch's
 *   layout, contiguous in θ (DESIGN.md §1's parameter order);
 * - the per-sample gradient of a layer whose parameters act at several
 *   positions is the sum over the positions: G_s = Σ_t δ_{s,t} ā_{s,t}ᵀ.
 */
import type { Step } from '../gpu/device.js';
import type { GpuDevice } from '../gpu/device.js';
import type { LayerKernels } from './kernels.js';

export type Shape = readonly number[];

/** The number of values of a shape. */
export function sizeOf(shape: Shape): number {
  return shape.reduce((a, b) => a * b, 1);
}

export interface ParameterSpec {
  role: 'weight' | 'bias';
  shape: number[];
  /** PyTorch's default initialisation: uniform in ±bound, or a constant. */
  init: { uniform: number } | { constant: number };
}

/** A parsed layer: its type, resolved fields, shapes, parameters and nested layers. */
export interface LayerNode<F = unknown> {
  readonly type: string;
  /** The tensor-name prefix of a parametrised layer (`name.weight`), else undefined. */
  readonly name: string | undefined;
  readonly fields: F;
  readonly input: Shape;
  readonly output: Shape;
  readonly parameters: readonly ParameterSpec[];
  /** Nested layers (a residual block's branch), in order. */
  readonly children: readonly LayerNode[];
}

/** What a layer's parser is given besides its JSON object. */
export interface ParseContext {
  /** "model.json: layers[3]" and so on: the prefix of every message about this layer. */
  readonly where: string;
  /** The per-sample shape of the layer's input. */
  readonly input: Shape;
  /** The layer's name: the JSON's "name" (validated, unique) or `${prefix}${k}`, k counting that prefix. */
  name(raw: unknown, prefix: string): string;
  /** Parses a nested list of layers (a residual branch) applied to `input`. */
  layers(raw: unknown, where: string, input: Shape): LayerNode[];
}

/** What a parser returns; the registry adds the type, the input and the spec's name. */
export interface Parsed<F> {
  fields: F;
  output: Shape;
  name?: string;
  parameters?: ParameterSpec[];
  children?: LayerNode[];
}

/** Runs nested layers on the CPU (a residual branch), for the twin of a layer that has them. */
export interface CpuRunner {
  forward(nodes: readonly LayerNode[], x: Float64Array): CpuTrace;
  /** dx of the nested layers, writing their parameters' gradients where the runner keeps them. */
  backward(trace: CpuTrace, dy: Float64Array, wantDx: boolean): Float64Array | undefined;
}

/** One sample's pass through a sequence: each layer's input, output and what it saved. */
export interface CpuTrace {
  nodes: readonly LayerNode[];
  steps: { x: Float64Array; y: Float64Array; saved: unknown }[];
}

/**
 * The float64 twin of a layer on one sample: plain loops, written to be read
 * and trusted. `w` holds the layer's parameters as views (weight, bias).
 */
export interface CpuTwin<F> {
  forward(node: LayerNode<F>, w: readonly Float64Array[], x: Float64Array, run: CpuRunner): { y: Float64Array; saved?: unknown };
  /**
   * From dy = ∂ℓ/∂y: writes the per-sample gradient of each parameter into
   * `g` (views shaped like `w`), and returns dx = ∂ℓ/∂x when `wantDx`.
   */
  backward(
    node: LayerNode<F>,
    w: readonly Float64Array[],
    io: { x: Float64Array; y: Float64Array; saved: unknown; dy: Float64Array },
    g: readonly Float64Array[],
    wantDx: boolean,
    run: CpuRunner,
  ): Float64Array | undefined;
}

/** An activation a GPU op applies in its forward epilogue: y = act(z), and z stored where `z` is given. */
export interface Epilogue {
  /** The ACT_* code of shaders/activation.wgsl. */
  code: number;
  /** Where z goes; undefined where nothing reads it (the derivative is then taken from y). */
  z?: GPUBuffer;
}

/**
 * An activation a GPU op differentiates in its backward epilogue: dx ⊙
 * act'(·) at the values in `z`. Those are the pre-activation z, or, where
 * the code carries ACT_AT_OUTPUT (derivativeCode), the activation's output.
 */
export interface BackwardEpilogue {
  code: number;
  z: GPUBuffer;
}

export interface ForwardIO {
  n: number;
  x: GPUBuffer;
  y: GPUBuffer;
  /** y = act(z) (only for ops that fuse an output activation). */
  act?: Epilogue;
}

export interface BackwardIO {
  n: number;
  x: GPUBuffer;
  y: GPUBuffer;
  /** ∂ℓ/∂ at the op's output: the pre-activation's when the op fused one. */
  dy: GPUBuffer;
  /** Where ∂ℓ/∂x goes; undefined when nobody needs it (the network's input). */
  dx?: GPUBuffer;
  /** dx ⊙ act' of the input's producer (only for ops that fuse an input activation). */
  inputAct?: BackwardEpilogue;
}

/** Where per-sample gradients go: g[offset + s·ldg + j] for the op's parameter j. */
export interface GradientRows {
  g: GPUBuffer;
  ldg: number;
  offset: number;
}

export interface GpuOp {
  /** Can compute y = act(z) in its forward pass. */
  readonly fusesOutputActivation: boolean;
  /** Can multiply dx by the input producer's act'(z) in its backward pass. */
  readonly fusesInputActivation: boolean;
  /** Passes data through unchanged (flatten, identity): the planner aliases its buffers and runs nothing. */
  readonly passThrough?: boolean;
  /** An activation's ACT_* code: the planner may fuse it into the op before. */
  readonly activation?: number;
  /** Device floats per sample the op holds itself (saved tensors, nested values). */
  floatsPerSample(): number;
  allocate(capacity: number): Promise<void>;
  release(): void;
  forward(step: Step, io: ForwardIO): void;
  backward(step: Step, io: BackwardIO): void;
  /** The parametrised ops at or below this one, with the input and output gradient each saw. */
  leaves(x: GPUBuffer, dy: GPUBuffer): ParameterLeaf[];
}

export interface ParameterOp extends GpuOp {
  readonly node: LayerNode;
  /** The layer's first parameter in θ, and how many it has. */
  readonly offset: number;
  readonly size: number;
  /** The per-sample gradients of the layer's parameters into `rows`. */
  perSampleGradient(step: Step, io: { n: number; x: GPUBuffer; dy: GPUBuffer }, rows: GradientRows): void;
  /** Whether `reduce` has a direct kernel for `kind` (else the caller needs per-sample rows). */
  canReduce(kind: 'sum' | 'squared'): boolean;
  /**
   * The direct kernel (where canReduce says there is one) for
   * `scale · Σ_s g_s` (sum) or `Σ_s g_s ⊙ g_s` (squared) into θ-shaped `out`
   * at `at` + the layer's offset.
   */
  reduce(step: Step, io: { n: number; x: GPUBuffer; dy: GPUBuffer }, out: { buffer: GPUBuffer; at: number }, kind: 'sum' | 'squared', scale: number): void;
  /** Present where the layer type is Kronecker-factored and this layer's geometry says so. */
  readonly kronecker?: KroneckerOp | undefined;
}

/**
 * How K-FAC factors a layer as G ⊗ A over its augmented [W | b] (DESIGN.md
 * §1): at each of its T positions an input ā_t of `inputs` values (the bias's
 * 1 not included) and an output gradient δ_t of `outputs` values, W being
 * [outputs, inputs] row-major in θ and b [outputs] after it.
 */
export interface KroneckerGeometry {
  positions: number;
  inputs: number;
  outputs: number;
  bias: boolean;
}

/** The K-FAC side of a layer type: its geometry and its float64 twin. */
export interface KroneckerTwin<F> {
  /** The geometry, or undefined where this layer is not Kronecker-factored (it then carries its exact diagonal). */
  geometry(node: LayerNode<F>): KroneckerGeometry | undefined;
  /** ā_t of one sample from the layer's input x: [T, inputs]. */
  inputs(node: LayerNode<F>, x: Float64Array): Float64Array;
  /** δ_t of one sample from the gradient at the layer's output: [T, outputs]. */
  outputGradients(node: LayerNode<F>, dy: Float64Array): Float64Array;
}

/** The K-FAC side of a layer's GPU op: its per-position rows for a batch of n samples. */
export interface KroneckerOp {
  /**
   * The layer's input x and output gradient dy already are the ā and δ rows
   * [n·T, inputs | outputs] from element 0 (a linear layer): K-FAC reads them
   * in place instead of copying them by inputRows and gradientRows.
   */
  readonly rowsInPlace: boolean;
  /** ā rows [n·T, inputs] into `out`. */
  inputRows(step: Step, io: { n: number; x: GPUBuffer }, out: GPUBuffer): void;
  /** δ rows [n·T, outputs] into `out` from element `at`. */
  gradientRows(step: Step, io: { n: number; dy: GPUBuffer }, out: { buffer: GPUBuffer; at: number }): void;
}

export interface ParameterLeaf {
  op: ParameterOp;
  x: GPUBuffer;
  dy: GPUBuffer;
}

/** What a layer's GPU op is built with. */
export interface GpuEnv {
  readonly gpu: GpuDevice;
  readonly kernels: LayerKernels;
  /** θ, the flat parameter vector on the device. */
  readonly theta: GPUBuffer;
  /** θ offset of a parametrised node's first parameter. */
  offset(node: LayerNode): number;
  /** The op of a nested sequence of layers (a residual branch). */
  sequence(nodes: readonly LayerNode[], input: Shape): GpuOp;
  /** How convolutions of one group run forward and backward (ConvolutionRoute). */
  readonly convolutions: ConvolutionRoute;
}

/**
 * How convolutions of one group run forward and backward: `products`, as
 * implicit matrix products on the tuned core (workgroup-shared tiles on a
 * GPU), or `direct`, the blocked direct kernels, which a CPU-SIMD driver
 * runs 1.4–2.3× faster (bench/RESULTS.md). Grouped convolutions are always direct.
 */
export type ConvolutionRoute = 'products' | 'direct';

/** A layer type: one module of this folder, one entry of registry.ts. */
export interface LayerType<F> {
  readonly type: string;
  /** Spec keys besides "type" it accepts. */
  readonly keys: readonly string[];
  parse(raw: Readonly<Record<string, unknown>>, ctx: ParseContext): Parsed<F>;
  /** The spec back as JSON. */
  toJson(node: LayerNode<F>): Record<string, unknown>;
  readonly cpu: CpuTwin<F>;
  gpu(node: LayerNode<F>, env: GpuEnv): GpuOp;
  /** Present for the layer types K-FAC factors (linear, conv2d). */
  readonly kronecker?: KroneckerTwin<F>;
}

/** A leaf op with no state and no parameters: the defaults of GpuOp. */
export abstract class StatelessOp implements GpuOp {
  readonly fusesOutputActivation: boolean = false;
  readonly fusesInputActivation: boolean = false;
  readonly passThrough?: boolean;
  readonly activation?: number;
  constructor(readonly node: LayerNode) {}
  floatsPerSample(): number {
    return 0;
  }
  async allocate(_capacity: number): Promise<void> {}
  release(): void {}
  leaves(): ParameterLeaf[] {
    return [];
  }
  abstract forward(step: Step, io: ForwardIO): void;
  abstract backward(step: Step, io: BackwardIO): void;
}
