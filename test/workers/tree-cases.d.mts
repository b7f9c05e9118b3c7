// Types for tree-cases.mjs, which the rank program runs as plain JS.
export const TREE_BIG: number;

export interface TreeCase {
  id: string;
  coll: 'allReduce' | 'broadcast' | 'reduce';
  dtype: 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int8' | 'uint8' | 'int32' | 'int64';
  op: 'sum' | 'prod' | 'min' | 'max' | 'avg' | null;
  count: number;
  inPlace: boolean;
  root: number;
  algorithm: 'ring' | 'tree' | 'auto';
  chunkBytes?: number;
  seed: number;
}

export function treeCases(size: number, table: string): TreeCase[];
