/**
 * The shape checks host and device GEMM share: sizes, transposes, scalars,
 * leading dimensions, strides and array lengths, each failure an
 * {@link InvalidArgumentError} naming the argument.
 *
 * @module
 * @internal
 */
import { InvalidArgumentError } from './errors.js';
import type { GemmDType, GemmOptions } from './gemm.js';

export const GEMM_DTYPES: readonly GemmDType[] = ['float32', 'float64', 'float16', 'bfloat16'];
export const MAX_INT32 = 2 ** 31 - 1;

/** A checked GEMM shape, as both addon entry points take it. */
export interface GemmShape {
  transA: boolean;
  transB: boolean;
  m: number;
  n: number;
  k: number;
  lda: number;
  ldb: number;
  ldc: number;
  batch: number;
  strideA: number;
  strideB: number;
  strideC: number;
  alpha: number;
  beta: number;
}

export function describeValue(v: unknown): string {
  return typeof v === 'number' ? String(v) : v === null ? 'null' : typeof v === 'string' ? `'${v}'` : typeof v;
}

export function gemmFail(message: string, op = 'gemm'): never {
  throw new InvalidArgumentError(message, { op });
}

/** A non-negative integer option (or its default). */
export function sizeOption(options: GemmOptions, name: keyof GemmOptions, fallback?: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = options[name];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    gemmFail(`\`${name}\` must be an integer in [0, ${max}], got ${describeValue(value)}`);
  }
  return value;
}

/** Elements one stored matrix spans: the last row starts at (rows - 1) * ld. */
export function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

/**
 * Checks `options` against arrays of `lengths` elements (a, b, c) and returns
 * the shape with every default filled in.
 * @throws {InvalidArgumentError} naming the bad argument.
 */
export function checkGemmShape(options: GemmOptions, lengths: { a: number; b: number; c: number }): GemmShape {
  for (const flag of ['transA', 'transB'] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean') {
      gemmFail(`\`${flag}\` must be a boolean, got ${describeValue(options[flag])}`);
    }
  }
  for (const scalar of ['alpha', 'beta'] as const) {
    if (options[scalar] !== undefined && typeof options[scalar] !== 'number') {
      gemmFail(`\`${scalar}\` must be a number, got ${describeValue(options[scalar])}`);
    }
  }
  const transA = options.transA ?? false;
  const transB = options.transB ?? false;
  const m = sizeOption(options, 'm', undefined, MAX_INT32);
  const n = sizeOption(options, 'n', undefined, MAX_INT32);
  const k = sizeOption(options, 'k', undefined, MAX_INT32);
  // Stored shapes (rows x cols) of A, B and C.
  const aRows = transA ? k : m, aCols = transA ? m : k;
  const bRows = transB ? n : k, bCols = transB ? k : n;
  const lda = sizeOption(options, 'lda', aCols, MAX_INT32);
  const ldb = sizeOption(options, 'ldb', bCols, MAX_INT32);
  const ldc = sizeOption(options, 'ldc', n, MAX_INT32);
  if (lda < aCols) gemmFail(`\`lda\` (${lda}) is smaller than a stored row of A (${aCols} elements: ${transA ? 'm, as transA is set' : 'k'})`);
  if (ldb < bCols) gemmFail(`\`ldb\` (${ldb}) is smaller than a stored row of B (${bCols} elements: ${transB ? 'k, as transB is set' : 'n'})`);
  if (ldc < n) gemmFail(`\`ldc\` (${ldc}) is smaller than a row of C (n = ${n} elements)`);
  const batch = sizeOption(options, 'batch', 1, MAX_INT32);
  const strideA = sizeOption(options, 'strideA', aRows * lda);
  const strideB = sizeOption(options, 'strideB', bRows * ldb);
  const strideC = sizeOption(options, 'strideC', m * ldc);
  const oneC = span(m, n, ldc);
  if (batch > 1 && strideC < oneC) {
    gemmFail(`\`strideC\` (${strideC}) is smaller than one C matrix (${oneC} elements): the batch entries of C would overlap`);
  }
  const need = (one: number, stride: number): number => (batch === 0 || one === 0 ? 0 : (batch - 1) * stride + one);
  const batchNote = batch === 1 ? '' : `, batch = ${batch}`;
  const needA = need(span(aRows, aCols, lda), strideA);
  if (lengths.a < needA) {
    gemmFail(`\`a\` has ${lengths.a} elements but ${transA ? 'k x m' : 'm x k'} = ${aRows} x ${aCols} with lda = ${lda}${batchNote}${batch > 1 ? `, strideA = ${strideA}` : ''} needs ${needA}`);
  }
  const needB = need(span(bRows, bCols, ldb), strideB);
  if (lengths.b < needB) {
    gemmFail(`\`b\` has ${lengths.b} elements but ${transB ? 'n x k' : 'k x n'} = ${bRows} x ${bCols} with ldb = ${ldb}${batchNote}${batch > 1 ? `, strideB = ${strideB}` : ''} needs ${needB}`);
  }
  const needC = need(oneC, strideC);
  if (lengths.c < needC) {
    gemmFail(`\`c\` has ${lengths.c} elements but m x n = ${m} x ${n} with ldc = ${ldc}${batchNote}${batch > 1 ? `, strideC = ${strideC}` : ''} needs ${needC}`);
  }
  return { transA, transB, m, n, k, lda, ldb, ldc, batch, strideA, strideB, strideC, alpha: options.alpha ?? 1, beta: options.beta ?? 0 };
}
