/**
 * The tensor element types fisher-gpu reads and writes: one table, from which
 * byte sizes, typed-array constructors and validation are all derived.
 * Names are safetensors' dtype strings.
 */
export const DTYPES = {
  F32: { bytes: 4, array: Float32Array },
  F64: { bytes: 8, array: Float64Array },
  I32: { bytes: 4, array: Int32Array },
  I64: { bytes: 8, array: BigInt64Array },
} as const;

export type Dtype = keyof typeof DTYPES;
export type TypedArrayOf<D extends Dtype> = InstanceType<(typeof DTYPES)[D]['array']>;
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array;

export function isDtype(name: string): name is Dtype {
  return Object.prototype.hasOwnProperty.call(DTYPES, name);
}

/** The dtype whose typed array is `data`'s class. */
export function dtypeOf(data: TensorData): Dtype {
  for (const [name, info] of Object.entries(DTYPES) as [Dtype, (typeof DTYPES)[Dtype]][]) {
    if (data instanceof info.array) return name;
  }
  throw new TypeError(`unsupported typed array ${(data as object).constructor.name}`);
}

/** A named-dimension-free tensor: row-major data of the given shape. */
export interface Tensor {
  dtype: Dtype;
  shape: number[];
  data: TensorData;
}

/** Number of elements of a shape (1 for a scalar's empty shape). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
