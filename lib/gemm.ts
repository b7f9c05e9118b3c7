/**
 * GEMM on host arrays: `C = alpha * op(A) @ op(B) + beta * C`, row-major as
 * TypeScript users think, through the CPU BLAS found at run time (OpenBLAS,
 * else a system CBLAS) or a portable fallback.
 *
 * **Ordering against collectives: there is none.** GEMMs run in submission
 * order on one native GEMM thread per process (never the libuv pool); a
 * communicator's collectives run on its own progress thread. The two run
 * concurrently, so a GEMM and a collective must never be in flight on the
 * same arrays (or overlapping views) at once: `await` the one before
 * handing the arrays to the other.
 *
 * ```ts
 * await gemm(a, b, c, { m, n, k, transB: true });   // c = a @ b^T
 * await comm.allReduce(c);                           // only after the GEMM settled
 * ```
 *
 * @module
 */
import { loadBinding, type NativeBinding, type NativeFailureRecord } from './binding.js';
import { DTYPE_CODES, dtypeOf, type DType } from './dtype.js';
import { InvalidArgumentError, RingtreeError, errorFromNative } from './errors.js';

/** The element types GEMM computes in. 16-bit floats are widened to float32, multiplied, and rounded back. */
export type GemmDType = 'float32' | 'float64' | 'float16' | 'bfloat16';

/** Arrays GEMM takes: Float32Array, Float64Array, or a Uint16Array holding float16/bfloat16 with `{ dtype }` (a Float16Array is accepted where the runtime has one). */
export type GemmArray = Float32Array | Float64Array | Uint16Array;

/**
 * Shape and scalars of a GEMM. All sizes and strides are counts of elements.
 * A is `m x k` (`k x m` when `transA`), B is `k x n` (`n x k` when `transB`),
 * C is `m x n`, each stored row by row.
 */
export interface GemmOptions {
  /** Rows of op(A) and of C. */
  m: number;
  /** Columns of op(B) and of C. */
  n: number;
  /** Columns of op(A), rows of op(B). 0 is allowed: C = beta * C. */
  k: number;
  /** Use A transposed (A is stored `k x m`). Default false. */
  transA?: boolean;
  /** Use B transposed (B is stored `n x k`). Default false. */
  transB?: boolean;
  /** Default 1. */
  alpha?: number;
  /** Default 0. With beta = 0, C is only written, never read (a NaN in C does not leak). */
  beta?: number;
  /** Distance between rows of A as stored; default its row length (`k`, or `m` with transA). Larger for a sub-matrix view. */
  lda?: number;
  /** Distance between rows of B as stored; default its row length (`n`, or `k` with transB). */
  ldb?: number;
  /** Distance between rows of C; default `n`. */
  ldc?: number;
  /** Number of independent GEMMs (strided-batched form). Default 1; 0 does nothing. */
  batch?: number;
  /** Elements between consecutive A matrices; default one whole A (`rows * lda`). 0 reuses one A for every entry. */
  strideA?: number;
  /** Elements between consecutive B matrices; default one whole B. 0 reuses one B. */
  strideB?: number;
  /** Elements between consecutive C matrices; default `m * ldc`. Must keep the C matrices apart. */
  strideC?: number;
  /** Required for Uint16Array (`'float16'` | `'bfloat16'`); otherwise optional and must match the arrays. */
  dtype?: GemmDType;
}

/** The CPU BLAS GEMM runs on. */
export interface BlasInfo {
  /** The library file the CBLAS functions came from, or `'fallback'`. */
  library: string;
  /** `'openblas'` (OpenBLAS, also through its libblas.so.3), `'reference'` (another CBLAS), or `'fallback'` (ringtree's portable code). */
  vendor: 'openblas' | 'reference' | 'fallback';
  /** `openblas_get_config()`, e.g. `"OpenBLAS 0.3.21 DYNAMIC_ARCH ... Haswell MAX_THREADS=64"`, or null. */
  config: string | null;
  /** Threads one GEMM may use (OpenBLAS honours `OPENBLAS_NUM_THREADS`); 1 for the fallback. */
  threads: number;
  /** Why no BLAS was loaded (every attempt, or `RINGTREE_BLAS=fallback`), or null when one was. */
  error: string | null;
}

/** The addon's GEMM exports (native/addon/AddonGemm.cc). */
interface NativeGemmDescriptor {
  dtype: number;
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

interface NativeGemmBinding {
  gemm(desc: NativeGemmDescriptor, a: ArrayBufferView, b: ArrayBufferView, c: ArrayBufferView,
    callback: (failure: NativeFailureRecord | null) => void): void;
  gemmSync(desc: NativeGemmDescriptor, a: ArrayBufferView, b: ArrayBufferView, c: ArrayBufferView): NativeFailureRecord | null;
  blasInfo(): BlasInfo & { forced: boolean };
  setGemmFallbackForTest(forced: boolean): boolean;
}

function gemmBinding(): NativeGemmBinding {
  return loadBinding() as NativeBinding & NativeGemmBinding;
}

const GEMM_DTYPES: readonly GemmDType[] = ['float32', 'float64', 'float16', 'bfloat16'];
const MAX_INT32 = 2 ** 31 - 1;

function describeValue(v: unknown): string {
  return typeof v === 'number' ? String(v) : v === null ? 'null' : typeof v === 'string' ? `'${v}'` : typeof v;
}

/** A non-negative integer option (or its default). */
function sizeOption(options: GemmOptions, name: keyof GemmOptions, fallback?: number, max = Number.MAX_SAFE_INTEGER): number {
  const value = options[name];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > max) {
    throw new InvalidArgumentError(
      `\`${name}\` must be an integer in [0, ${max}], got ${describeValue(value)}`, { op: 'gemm' });
  }
  return value;
}

/** Elements one stored matrix spans: the last row starts at (rows - 1) * ld. */
function span(rows: number, cols: number, ld: number): number {
  return rows === 0 || cols === 0 ? 0 : (rows - 1) * ld + cols;
}

/** A validated call: what the addon gets. */
interface PreparedGemm {
  desc: NativeGemmDescriptor;
  a: GemmArray;
  b: GemmArray;
  c: GemmArray;
}

/** True when two views of one buffer share a byte. */
function overlaps(x: ArrayBufferView, y: ArrayBufferView): boolean {
  if (x.buffer !== y.buffer || x.byteLength === 0 || y.byteLength === 0) return false;
  return x.byteOffset < y.byteOffset + y.byteLength && y.byteOffset < x.byteOffset + x.byteLength;
}

function prepare(a: GemmArray, b: GemmArray, c: GemmArray, options: GemmOptions): PreparedGemm {
  const fail = (message: string): never => {
    throw new InvalidArgumentError(message, { op: 'gemm' });
  };
  if (typeof options !== 'object' || options === null) fail('gemm(a, b, c, options): `options` must be an object with m, n and k');
  if (options.dtype !== undefined && !GEMM_DTYPES.includes(options.dtype)) {
    fail(`\`dtype\` must be one of ${GEMM_DTYPES.join(', ')}, got ${describeValue(options.dtype)}`);
  }
  const dtypes = { a: dtypeOf(a, options.dtype, 'a'), b: dtypeOf(b, options.dtype, 'b'), c: dtypeOf(c, options.dtype, 'c') };
  for (const [name, dtype] of Object.entries(dtypes) as Array<[string, DType]>) {
    if (!(GEMM_DTYPES as readonly string[]).includes(dtype)) {
      fail(`\`${name}\` holds ${dtype}; gemm computes in ${GEMM_DTYPES.join(', ')}`);
    }
  }
  if (dtypes.b !== dtypes.a) fail(`\`b\` holds ${dtypes.b} but \`a\` holds ${dtypes.a}: a, b and c must have one dtype`);
  if (dtypes.c !== dtypes.a) fail(`\`c\` holds ${dtypes.c} but \`a\` holds ${dtypes.a}: a, b and c must have one dtype`);
  const dtype = dtypes.a as GemmDType;

  for (const flag of ['transA', 'transB'] as const) {
    if (options[flag] !== undefined && typeof options[flag] !== 'boolean') {
      fail(`\`${flag}\` must be a boolean, got ${describeValue(options[flag])}`);
    }
  }
  for (const scalar of ['alpha', 'beta'] as const) {
    if (options[scalar] !== undefined && typeof options[scalar] !== 'number') {
      fail(`\`${scalar}\` must be a number, got ${describeValue(options[scalar])}`);
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
  if (lda < aCols) fail(`\`lda\` (${lda}) is smaller than a stored row of A (${aCols} elements: ${transA ? 'm, as transA is set' : 'k'})`);
  if (ldb < bCols) fail(`\`ldb\` (${ldb}) is smaller than a stored row of B (${bCols} elements: ${transB ? 'k, as transB is set' : 'n'})`);
  if (ldc < n) fail(`\`ldc\` (${ldc}) is smaller than a row of C (n = ${n} elements)`);
  const batch = sizeOption(options, 'batch', 1, MAX_INT32);
  const strideA = sizeOption(options, 'strideA', aRows * lda);
  const strideB = sizeOption(options, 'strideB', bRows * ldb);
  const strideC = sizeOption(options, 'strideC', m * ldc);
  const oneC = span(m, n, ldc);
  if (batch > 1 && strideC < oneC) {
    fail(`\`strideC\` (${strideC}) is smaller than one C matrix (${oneC} elements): the batch entries of C would overlap`);
  }
  const need = (one: number, stride: number): number => (batch === 0 || one === 0 ? 0 : (batch - 1) * stride + one);
  const batchNote = batch === 1 ? '' : `, batch = ${batch}`;
  const needA = need(span(aRows, aCols, lda), strideA);
  if (a.length < needA) {
    fail(`\`a\` has ${a.length} elements but ${transA ? 'k x m' : 'm x k'} = ${aRows} x ${aCols} with lda = ${lda}${batchNote}${batch > 1 ? `, strideA = ${strideA}` : ''} needs ${needA}`);
  }
  const needB = need(span(bRows, bCols, ldb), strideB);
  if (b.length < needB) {
    fail(`\`b\` has ${b.length} elements but ${transB ? 'n x k' : 'k x n'} = ${bRows} x ${bCols} with ldb = ${ldb}${batchNote}${batch > 1 ? `, strideB = ${strideB}` : ''} needs ${needB}`);
  }
  const needC = need(oneC, strideC);
  if (c.length < needC) {
    fail(`\`c\` has ${c.length} elements but m x n = ${m} x ${n} with ldc = ${ldc}${batchNote}${batch > 1 ? `, strideC = ${strideC}` : ''} needs ${needC}`);
  }
  // C is written while A and B are read (in blocks, by several threads):
  // any shared byte would make the result depend on the schedule.
  if (overlaps(c, a)) fail('`c` overlaps `a` (views of one ArrayBuffer sharing bytes): C must not alias an input');
  if (overlaps(c, b)) fail('`c` overlaps `b` (views of one ArrayBuffer sharing bytes): C must not alias an input');
  return {
    desc: {
      dtype: DTYPE_CODES[dtype], transA, transB, m, n, k, lda, ldb, ldc, batch, strideA, strideB, strideC,
      alpha: options.alpha ?? 1, beta: options.beta ?? 0,
    },
    a, b, c,
  };
}

let slowWarningDone = false;

/** Says once per process that GEMM runs on the slow fallback because no BLAS was found. */
function warnIfNoBlas(binding: NativeGemmBinding): void {
  if (slowWarningDone) return;
  slowWarningDone = true;
  const blas = binding.blasInfo();
  // RINGTREE_BLAS=fallback is a choice, not a problem.
  if (blas.error === null || blas.forced) return;
  process.emitWarning(
    `ringtree: no CPU BLAS was found (${blas.error}); GEMM runs on ringtree's portable fallback, ` +
      'which is many times slower than OpenBLAS. Fix: `apt-get install libopenblas0-pthread` ' +
      '(Debian/Ubuntu; `dnf install openblas` on Fedora/RHEL), or set RINGTREE_BLAS_PATH to a library exporting cblas_sgemm.',
    { type: 'RingtreeWarning', code: 'RINGTREE_NO_BLAS' },
  );
}

/**
 * `C = alpha * op(A) @ op(B) + beta * C` (row-major), optionally strided-batched,
 * on the GEMM thread. Resolves once C is written and ringtree will not touch
 * a, b or c again (they stay referenced until then). Do not read or write
 * c, or pass any of the arrays to a collective, before it settles: GEMMs
 * and collectives are not ordered against each other (see the module docs).
 *
 * float16/bfloat16 (Uint16Array with `{ dtype }`) are widened to float32,
 * multiplied in float32 and rounded back to nearest-even.
 *
 * @param a A, `m x k` (`k x m` with transA), rows `lda` apart.
 * @param b B, `k x n` (`n x k` with transB), rows `ldb` apart.
 * @param c C, `m x n`, rows `ldc` apart; must not share bytes with a or b.
 * @param options sizes, transposes, scalars, leading dimensions, batch, dtype.
 * @returns a Promise that rejects (never throws) with {@link InvalidArgumentError}
 *   naming the bad argument (sizes, leading dimensions, strides, array lengths,
 *   mixed dtypes, C overlapping A or B), or `BackendUnavailableError` without the addon.
 */
export function gemm(a: GemmArray, b: GemmArray, c: GemmArray, options: GemmOptions): Promise<void> {
  let prepared: PreparedGemm;
  let binding: NativeGemmBinding;
  try {
    prepared = prepare(a, b, c, options);
    binding = gemmBinding();
    warnIfNoBlas(binding);
  } catch (err) {
    return Promise.reject(err);
  }
  return new Promise<void>((resolve, reject) => {
    try {
      binding.gemm(prepared.desc, prepared.a, prepared.b, prepared.c, (failure) => {
        if (failure) reject(errorFromNative(failure, { op: 'gemm' }));
        else resolve();
      });
    } catch (err) {
      reject(err instanceof RingtreeError ? err : errorFromNative({ code: 7, message: (err as Error).message }, { op: 'gemm' }));
    }
  });
}

/**
 * {@link gemm} on the calling thread: blocks the event loop for the whole
 * multiplication, so use it for small problems (where the ~30 us of an
 * asynchronous round trip would dominate) or in worker threads. Not ordered
 * against pending asynchronous GEMMs either: do not share arrays with one in flight.
 *
 * @throws {InvalidArgumentError} for bad arguments (as {@link gemm} rejects).
 */
export function gemmSync(a: GemmArray, b: GemmArray, c: GemmArray, options: GemmOptions): void {
  const prepared = prepare(a, b, c, options);
  const binding = gemmBinding();
  warnIfNoBlas(binding);
  const failure = binding.gemmSync(prepared.desc, prepared.a, prepared.b, prepared.c);
  if (failure) throw errorFromNative(failure, { op: 'gemmSync' });
}

/**
 * The CPU BLAS GEMM uses. Loads it on first call (dlopen of
 * `RINGTREE_BLAS_PATH` when set, else `libopenblas.so.0`, else
 * `libblas.so.3`); `RINGTREE_BLAS=fallback` (read at first use) forces the
 * portable fallback.
 *
 * @throws {BackendUnavailableError} when the native addon does not load.
 */
export function blasInfo(): BlasInfo {
  const { library, vendor, config, threads, error } = gemmBinding().blasInfo();
  return { library, vendor, config, threads, error };
}

/**
 * Test hook: send every later GEMM to the portable fallback (true) or back
 * to the BLAS (false). Returns whether the fallback is in use now.
 * @internal
 */
export function setGemmFallbackForTest(forced: boolean): boolean {
  return gemmBinding().setGemmFallbackForTest(forced);
}

