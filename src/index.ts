/**
 * fisher-gpu: Fisher Information Matrices of neural networks on the GPU.
 *
 * ```ts
 * const gpu = await openDevice();
 * const model = await Network.load('model.json', 'weights.safetensors');
 * const data = await Dataset.load('data.safetensors', model);
 * const F = await fisher(gpu, model, data, { kind: 'empirical', structure: 'diag' });
 * await F.save('fisher.safetensors');
 * gpu.dispose();
 * ```
 *
 * This module is the public API; nothing inside the package imports it.
 */
export { openDevice, GpuDevice, type OpenDeviceOptions, type AdapterDescription } from './gpu/device.js';
export {
  GpuError,
  NoAdapterError,
  ShaderError,
  GpuValidationError,
  GpuOutOfMemoryError,
  GpuInternalError,
  DeviceLostError,
  GpuLimitError,
} from './gpu/errors.js';
export { Network, Mlp } from './model/network.js';
export { Dataset, type DataSource } from './model/data.js';
export { DataFile } from './model/data-file.js';
export { parseSpec, mlpSpec, type ModelSpec } from './model/spec.js';
export { LAYER_TYPE_NAMES } from './layers/registry.js';
export type { LayerNode, Shape, ParameterSpec } from './layers/layer.js';
export { InputError } from './layers/errors.js';
export { ACTIVATION_NAMES, type ActivationName } from './layers/activations.js';
export { LIKELIHOOD_TYPES, type LikelihoodSpec, type LikelihoodType } from './model/likelihoods.js';
export { parameterLayout, tensorLayout, type ParameterLayout, type TensorLayout, type ParameterEntry, type LayerBlock } from './model/layout.js';
export { Rng } from './model/random.js';
export type { Engine, LoadedModel, SquaredGradientTotal, Backend } from './engine/engine.js';
export { CpuEngine } from './engine/cpu.js';
export { GpuEngine } from './engine/gpu.js';
export { MATMUL_CORES, type MatmulConfig, type MatmulCore, type MatmulShape } from './kernels/matmul.js';
export { ensureTuned, matmulShapesFor, type TuningEntry } from './engine/tuning.js';
export { adapterKind, defaultShapesFor, type AdapterKind } from './engine/autotune.js';
export { selectEngine, type BackendChoice } from './engine/select.js';
export { fisher, prepareFisher } from './fisher/estimate.js';
export {
  KINDS,
  STRUCTURES,
  REDUCTIONS,
  KFAC_MODES,
  SUPPORTED_KINDS,
  SUPPORTED_STRUCTURES,
  type FisherOptions,
  type FisherKind,
  type FisherStructure,
  type Reduction,
  type KfacMode,
} from './fisher/options.js';
export {
  SOLVE_METHODS,
  type FisherMatrix,
  type FisherInfo,
  type FileDtype,
  type ShardInfo,
  type SolveMethod,
  type SolveOptions,
  type SolveReport,
  type EigOptions,
  type Eigenpairs,
  type DenseBlock,
  type DenseBlocks,
} from './fisher/result.js';
export {
  choleskyOnDevice,
  solveOnDevice,
  DenseCholesky,
  DEVICE_SOLVE_MIN_SIZE,
  type DeviceCholeskyOptions,
  type DeviceSolveOptions,
  type DeviceSolveReport,
} from './fisher/device-solve.js';
export { Fisher, loadFisher } from './fisher/load.js';
export { mergeShards, shardRange, type ShardChoice } from './fisher/shard.js';
export { fisherWeightedMerge, type MergeModelsOptions } from './fisher/merging.js';
export { readParameterVector, parameterTensors } from './fisher/vectors.js';
export { fromGradients, type GradientOptions, type GradientChunk, type GradientSource } from './fisher/gradients.js';
export { forecast, type Forecast, type ForecastNoise } from './fisher/forecast.js';
export { DiagonalFisher } from './fisher/structures/diag.js';
export { DenseFisher } from './fisher/structures/full.js';
export { BlockFisher } from './fisher/structures/block.js';
export { StoredFisher } from './fisher/structures/spill.js';
export { planStructure, planEvery, type StructurePlan, type MemoryBudget } from './fisher/plan.js';
export { KfacFisher, type LayerFactor, type KroneckerFactor, type DiagonalFactor, type FactorShape } from './fisher/structures/kfac.js';
export { EkfacFisher, type EkfacFactor, type EigenbasisFactor } from './fisher/structures/ekfac.js';
export { LowRankFisher, type LowRankReport } from './fisher/structures/lowrank.js';
export type { ConvolutionRoute, KroneckerGeometry } from './layers/layer.js';
export { readSafetensors, writeSafetensors, decodeSafetensors, encodeSafetensors, SafetensorsError, type SafetensorsFile } from './io/safetensors.js';
export type { Tensor, Dtype } from './io/dtypes.js';
export { train, accuracy, TrainingDivergedError, type TrainOptions } from './train/train.js';
export { lossGradient } from './train/gradient.js';
export { ewcPenaltyGradient, ewcPenaltyValue, OnlineEwc, type EwcAnchor } from './fisher/penalty.js';
export { penaltyGradient, penaltyValue, type Anchor } from './train/penalty.js';
export type { OptimizerSpec, PenaltyGradient, KroneckerPenalty, DensePenalty } from './engine/optimizer.js';
export { ARCHITECTURES, architectureSpec, cnnSpec, resnetSpec, type Architecture } from './model/architectures.js';
