// Types for collectiveTable.mjs, which the rank program runs as plain JS.
export type DTypeName = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int8' | 'uint8' | 'int32' | 'int64';
export type OpName = 'sum' | 'prod' | 'min' | 'max' | 'avg';
export type CollName = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'reduce';
export type TableName = 'full' | 'simd' | 'slots';
export type AnyArray = Float32Array | Float64Array | Uint16Array | Int8Array | Uint8Array | Int32Array | BigInt64Array;

export interface Case {
  id: string;
  coll: CollName;
  dtype: DTypeName;
  op: OpName | null;
  count: number;
  inPlace: boolean;
  root: number;
  seed: number;
  chunkBytes?: number;
  /** Elements between the buffer's start and the arrays' views. */
  offset?: number;
  /** Passed as `algorithm`; absent: the default (ring). */
  algorithm?: 'ring' | 'tree' | 'auto';
}

export const DTYPES: DTypeName[];
export const OPS: OpName[];
export const COLLECTIVES: CollName[];
export const REDUCING: Set<string>;
export const BIG: number;
export const OP_TIMEOUT_MS: number;
export function arrayClass(dtype: DTypeName): new (n: number) => AnyArray;
export function elemSize(dtype: DTypeName): number;
export function is16(dtype: DTypeName): boolean;
export function dtypeOption(dtype: DTypeName): { dtype?: DTypeName };
export function mix(a: number, b: number, c: number): number;
export function makeInput(c: Pick<Case, 'dtype' | 'op' | 'seed'>, rank: number, count: number): AnyArray;
export function reduced(c: Pick<Case, 'dtype' | 'op' | 'seed'>, size: number, count: number): AnyArray;
export function bytesOf(a: ArrayBufferView): Uint8Array;
export function sha256(a: ArrayBufferView): string;
export function snapshot(a: ArrayBufferView): Uint8Array;
export function sentinel(dtype: DTypeName, count: number): AnyArray;
export function firstDifference(got: AnyArray, want: AnyArray, dtype: DTypeName): string | null;
export function buildTable(size: number, name: TableName): Case[];
export function sectionsOf(name: TableName): string[];
