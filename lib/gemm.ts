/**
 * GEMM: `C = alpha * op(A) @ op(B) + beta * C`, row-major as TypeScript users
 * think, on host arrays (through the CPU BLAS found at run time: OpenBLAS,
 * else a system CBLAS, else a portable fallback) or on {@link DeviceArray}s
 * (through cuBLASLt, found at run time, with optional fused epilogues: bias,
 * ReLU, GELU and their backward forms; see {@link GemmEpilogue}).
 *
 * **Where GEMMs run.** Host GEMMs run in submission order on one native GEMM
 * thread per process; device GEMMs run on the device's stream, issued by the
 * native thread that owns it (the same stream and thread as DeviceArray
 * copies and fills). Neither ever uses the libuv pool.
 *
 * **Ordering of device GEMMs.** A device GEMM starts after every operation
 * already submitted on any of its arrays (a, b, c, bias, aux) or on any
 * other view of their allocations has settled: copies, fills, other GEMMs
 * and collectives alike; and every operation submitted on those arrays after
 * it waits for it. So `await` is not needed between them:
 *
 * ```ts
 * const p1 = x.copyFrom(host);                      // device stream
 * const p2 = gemm(x, w, y, { m, n, k });            // waits for the copy into x
 * const p3 = comm.allReduce(y);                     // NCCL stream, waits for the GEMM
 * await Promise.all([p1, p2, p3]);
 * ```
 *
 * Device GEMMs on unrelated arrays queue back to back on the stream without
 * waiting for each other.
 *
 * **Host GEMMs and collectives: no ordering.** A host GEMM and a
 * communicator's collectives run on different threads concurrently, so a
 * host GEMM and a collective must never be in flight on the same arrays (or
 * overlapping views) at once: `await` the one before handing the arrays to
 * the other.
 *
 * ```ts
 * await gemm(a, b, c, { m, n, k, transB: true });   // c = a @ b^T (host arrays)
 * await comm.allReduce(c);                           // only after the GEMM settled
 * ```
 *
 * @module
 */
import { loadBinding, type NativeBinding, type NativeFailureRecord } from './binding.js';
import { isDeviceArray, type DeviceArray } from './device.js';
import { deviceGemm, timedDeviceGemm } from './deviceGemm.js';
import { DTYPE_CODES, dtypeOf } from './dtype.js';
import { RingtreeError, errorFromNative } from './errors.js';
import { GEMM_DTYPES, checkGemmShape, describeValue, gemmFail, type GemmShape } from './gemmShape.js';

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
  /**
   * Device float32 only: let cuBLAS round A and B to TF32 (10-bit mantissa)
   * on tensor cores (`CUBLAS_COMPUTE_32F_FAST_TF32`), several times faster,
   * about 1e-3 relative error. Default false: plain FP32 (`CUBLAS_COMPUTE_32F`).
   * No effect on host arrays (the CPU computes in float32).
   */
  tf32?: boolean;
  /**
   * Device arrays only: a cuBLASLt epilogue fused into the GEMM (see
   * {@link GemmEpilogue} for what each does, and `bias` / `aux`). Needs
   * float32, float16 or bfloat16 and `batch` 1. Default: none.
   */
  epilogue?: GemmEpilogue;
  /**
   * Epilogues with a bias: one value per column of C (per output feature, as
   * a Linear layer wants), a DeviceArray of c's dtype with at least `n`
   * elements (the first `n` are used). Read by the forward epilogues; the
   * `...Bgrad` epilogues write the bias gradient into it instead. Must not
   * overlap a, b, c or aux.
   */
  bias?: DeviceArray;
  /**
   * `...Aux` epilogues write, and `dRelu*` / `dGelu*` read, the
   * pre-activation stored beside C, row-major, `m` rows `auxLd` apart:
   * - GELU forms: the value before GELU, a DeviceArray of c's dtype with at
   *   least `(m - 1) * auxLd + n` elements; `auxLd` a multiple of 8, >= n.
   * - ReLU forms: a bit mask (1 where the pre-activation was > 0), a `'uint8'`
   *   DeviceArray of at least `m * auxLd / 8` bytes; `auxLd` counts bits, a
   *   multiple of 128, >= n. The bit layout is cuBLASLt's: hand it from a
   *   `reluAux` GEMM to a `dRelu` GEMM, do not read it as data.
   *
   * Its device address must be 16-byte aligned; it must not overlap a, b, c or bias.
   */
  aux?: DeviceArray;
  /** Row stride of `aux`: elements (GELU) or bits (ReLU mask). Default `n` rounded up to 8 (GELU) or 128 (ReLU). */
  auxLd?: number;
}

/**
 * cuBLASLt epilogues (device arrays). With `t = alpha * op(A) @ op(B) + beta * C`,
 * row-major `m x n`, and `bias[j]` added to every row's column j:
 *
 * | epilogue | C becomes | aux | bias |
 * |---|---|---|---|
 * | `'bias'` | t + bias | - | read |
 * | `'relu'` / `'gelu'` | act(t) | - | - |
 * | `'biasRelu'` / `'biasGelu'` | act(t + bias) | - | read |
 * | `'reluAux'` / `'geluAux'` | act(t) | writes t (GELU) / t > 0 mask (ReLU) | - |
 * | `'biasReluAux'` / `'biasGeluAux'` | act(t + bias) | writes t + bias / its mask | read |
 * | `'dRelu'` | t * (mask ? 1 : 0) | reads the mask | - |
 * | `'dGelu'` | t * gelu'(aux) | reads the pre-activation | - |
 * | `'dReluBgrad'` / `'dGeluBgrad'` | as `dRelu` / `dGelu` | reads | writes bias[j] = sum over rows i of C[i][j] |
 *
 * GELU is the tanh approximation `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
 * The backward forms fit a Linear layer `y = act(x @ W^T + b)`: with `t` the
 * incoming gradient `dy`, C receives `dz = dy * act'(z)` and bias `db = sum_rows dz`.
 */
export type GemmEpilogue =
  | 'bias' | 'relu' | 'gelu' | 'biasRelu' | 'biasGelu'
  | 'reluAux' | 'geluAux' | 'biasReluAux' | 'biasGeluAux'
  | 'dRelu' | 'dGelu' | 'dReluBgrad' | 'dGeluBgrad';

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

/**
 * What the addon reads (native/addon/AddonGemm.cc, GemmField): the dtype
 * code, transA, transB (0/1), m, n, k, lda, ldb, ldc, batch, strideA,
 * strideB, strideC, alpha, beta, packed in this order. One array serves
 * every call: the addon copies it before the call returns.
 */
type NativeGemmDescriptor = Float64Array;
const GEMM_DESC: NativeGemmDescriptor = new Float64Array(15);

function pack(dtype: number, s: GemmShape): NativeGemmDescriptor {
  const d = GEMM_DESC;
  d[0] = dtype; d[1] = s.transA ? 1 : 0; d[2] = s.transB ? 1 : 0;
  d[3] = s.m; d[4] = s.n; d[5] = s.k; d[6] = s.lda; d[7] = s.ldb; d[8] = s.ldc;
  d[9] = s.batch; d[10] = s.strideA; d[11] = s.strideB; d[12] = s.strideC;
  d[13] = s.alpha; d[14] = s.beta;
  return d;
}

/** The addon's GEMM exports (native/addon/AddonGemm.cc). */
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
  if (typeof options !== 'object' || options === null) gemmFail('gemm(a, b, c, options): `options` must be an object with m, n and k');
  for (const name of ['epilogue', 'bias', 'aux', 'auxLd'] as const) {
    if (options[name] !== undefined) {
      gemmFail(`\`${name}\` needs device arrays (cuBLASLt epilogues); a, b and c are host arrays here`);
    }
  }
  if (options.tf32 !== undefined && typeof options.tf32 !== 'boolean') gemmFail(`\`tf32\` must be a boolean, got ${describeValue(options.tf32)}`);
  if (options.dtype !== undefined && !GEMM_DTYPES.includes(options.dtype)) {
    gemmFail(`\`dtype\` must be one of ${GEMM_DTYPES.join(', ')}, got ${describeValue(options.dtype)}`);
  }
  const dtA = gemmDtypeOf(a, options.dtype, 'a'), dtB = gemmDtypeOf(b, options.dtype, 'b'), dtC = gemmDtypeOf(c, options.dtype, 'c');
  if (dtB !== dtA) gemmFail(`\`b\` holds ${dtB} but \`a\` holds ${dtA}: a, b and c must have one dtype`);
  if (dtC !== dtA) gemmFail(`\`c\` holds ${dtC} but \`a\` holds ${dtA}: a, b and c must have one dtype`);
  const dtype = dtA;
  const shape = checkGemmShape(options, { a: a.length, b: b.length, c: c.length });
  // C is written while A and B are read (in blocks, by several threads):
  // any shared byte would make the result depend on the schedule.
  if (overlaps(c, a)) gemmFail('`c` overlaps `a` (views of one ArrayBuffer sharing bytes): C must not alias an input');
  if (overlaps(c, b)) gemmFail('`c` overlaps `b` (views of one ArrayBuffer sharing bytes): C must not alias an input');
  return { desc: pack(DTYPE_CODES[dtype], shape), a, b, c };
}

/** The array's dtype, which must be one GEMM computes in. */
function gemmDtypeOf(x: GemmArray, declared: GemmDType | undefined, name: string): GemmDType {
  const dtype = dtypeOf(x, declared, name);
  if (!(GEMM_DTYPES as readonly string[]).includes(dtype)) gemmFail(`\`${name}\` holds ${dtype}; gemm computes in ${GEMM_DTYPES.join(', ')}`);
  return dtype as GemmDType;
}

/** Host arrays on one side, device arrays on the other: rejected, naming the odd one. */
function deviceCall(a: unknown, b: unknown, c: unknown): boolean {
  const kinds = { a: isDeviceArray(a), b: isDeviceArray(b), c: isDeviceArray(c) };
  const device = Object.entries(kinds).filter(([, d]) => d).map(([n]) => n);
  if (device.length === 0) return false;
  if (device.length === 3) return true;
  const host = Object.entries(kinds).filter(([, d]) => !d).map(([n]) => n);
  return gemmFail(`${host.map((n) => `\`${n}\``).join(' and ')} ${host.length > 1 ? 'are host arrays' : 'is a host array'} but ` +
    `${device.map((n) => `\`${n}\``).join(' and ')} ${device.length > 1 ? 'are DeviceArrays' : 'is a DeviceArray'}: ` +
    'a, b and c must all be host arrays or all DeviceArrays on one GPU (copy with DeviceArray.fromHost / toHost)');
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
 * `C = alpha * op(A) @ op(B) + beta * C` (row-major), optionally strided-batched.
 *
 * Host arrays: on the GEMM thread through the CPU BLAS; float16/bfloat16
 * (Uint16Array with `{ dtype }`) are widened to float32, multiplied in
 * float32 and rounded back to nearest-even. Not ordered against collectives
 * (see the module docs): do not hand the arrays to one before it settles.
 *
 * DeviceArrays (all three on one GPU): through cuBLASLt on the device's
 * stream, ordered after earlier operations on the same arrays and before
 * later ones (see the module docs). float32 computes in plain FP32 unless
 * `tf32: true`; float16 and bfloat16 accumulate in float32; float64 in
 * float64. With `beta` 0, C is never read. `epilogue` fuses bias/ReLU/GELU
 * (see {@link GemmEpilogue}). cuBLAS/cuBLASLt load on the first device GEMM.
 *
 * Resolves once C (and aux/bias where an epilogue writes them) is written
 * and ringtree will not touch the arrays again (they stay referenced until
 * then).
 *
 * @param a A, `m x k` (`k x m` with transA), rows `lda` apart.
 * @param b B, `k x n` (`n x k` with transB), rows `ldb` apart.
 * @param c C, `m x n`, rows `ldc` apart; must not share bytes with a or b.
 * @param options sizes, transposes, scalars, leading dimensions, batch, dtype;
 *   for device arrays also tf32, epilogue, bias, aux, auxLd.
 * @returns a Promise that rejects (never throws) with {@link InvalidArgumentError}
 *   naming the bad argument (sizes, leading dimensions, strides, array lengths,
 *   mixed dtypes, host and device arrays mixed, arrays on different GPUs, C
 *   overlapping A or B, epilogue/bias/aux misuse, or a combination cuBLASLt
 *   has no algorithm for), `BackendUnavailableError` without the addon, the
 *   CUDA driver or cuBLAS (naming the fix), `InternalError` when cuBLAS
 *   fails, `TimeoutError` when the GPU does not finish within 300 s.
 */
export function gemm(a: GemmArray | DeviceArray, b: GemmArray | DeviceArray, c: GemmArray | DeviceArray, options: GemmOptions): Promise<void> {
  let prepared: PreparedGemm;
  let binding: NativeGemmBinding;
  try {
    if (deviceCall(a, b, c)) return deviceGemm(a as DeviceArray, b as DeviceArray, c as DeviceArray, options);
    prepared = prepare(a as GemmArray, b as GemmArray, c as GemmArray, options);
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
 * Benchmark hook: `iterations` device GEMMs issued back to back by the native
 * stream thread between two CUDA events (after one untimed warm-up call that
 * makes the handle, workspace and plan); resolves with their GPU time in
 * milliseconds (cuEventElapsedTime). Same arguments and checks as
 * {@link gemm} on DeviceArrays; ordered like it.
 * @internal
 */
export function gemmTimed(a: DeviceArray, b: DeviceArray, c: DeviceArray, options: GemmOptions, iterations: number): Promise<number> {
  try {
    if (!deviceCall(a, b, c)) gemmFail('gemmTimed takes DeviceArrays');
  } catch (err) {
    return Promise.reject(err);
  }
  return timedDeviceGemm(a, b, c, options, iterations);
}

/**
 * {@link gemm} on the calling thread: blocks the event loop for the whole
 * multiplication, so use it for small problems (where the ~30 us of an
 * asynchronous round trip would dominate) or in worker threads. Not ordered
 * against pending asynchronous GEMMs either: do not share arrays with one in flight.
 *
 * @throws {InvalidArgumentError} for bad arguments (as {@link gemm} rejects), and for DeviceArrays.
 */
export function gemmSync(a: GemmArray, b: GemmArray, c: GemmArray, options: GemmOptions): void {
  const m = lastSync;
  let failure: NativeFailureRecord | null;
  // The same call as the last one (same arrays, as long as they were; the
  // same options object, every field unchanged): its checks still hold, and
  // its packed descriptor is reused. A loop of small GEMMs spent most of
  // each call re-validating.
  if (m !== null && m.a === a && m.b === b && m.c === c && m.o === options && m.la === a.length &&
    m.lb === b.length && m.lc === c.length && sameGemmFields(m.fields, options)) {
    failure = m.binding.gemmSync(m.desc, a, b, c);
  } else {
    lastSync = null;
    if (isDeviceArray(a) || isDeviceArray(b) || isDeviceArray(c)) {
      gemmFail('gemmSync takes host arrays; use `await gemm(...)` for DeviceArrays', 'gemmSync');
    }
    const prepared = prepare(a, b, c, options);
    const binding = gemmBinding();
    warnIfNoBlas(binding);
    const desc = Float64Array.from(prepared.desc);
    failure = binding.gemmSync(desc, a, b, c);
    if (!failure) {
      lastSync = { a, b, c, o: options, la: a.length, lb: b.length, lc: c.length, fields: gemmFields(options), desc, binding };
    }
  }
  if (failure) throw errorFromNative(failure, { op: 'gemmSync' });
}

/** The options fields a call depends on (named loads: a keyed loop cost ~0.2 us). */
function gemmFields(o: GemmOptions): GemmOptions {
  return {
    m: o.m, n: o.n, k: o.k, transA: o.transA, transB: o.transB, alpha: o.alpha, beta: o.beta, lda: o.lda, ldb: o.ldb,
    ldc: o.ldc, batch: o.batch, strideA: o.strideA, strideB: o.strideB, strideC: o.strideC, dtype: o.dtype, tf32: o.tf32,
    epilogue: o.epilogue, bias: o.bias, aux: o.aux, auxLd: o.auxLd,
  };
}

function sameGemmFields(f: GemmOptions, o: GemmOptions): boolean {
  return f.m === o.m && f.n === o.n && f.k === o.k && f.transA === o.transA && f.transB === o.transB &&
    f.alpha === o.alpha && f.beta === o.beta && f.lda === o.lda && f.ldb === o.ldb && f.ldc === o.ldc &&
    f.batch === o.batch && f.strideA === o.strideA && f.strideB === o.strideB && f.strideC === o.strideC &&
    f.dtype === o.dtype && f.tf32 === o.tf32 && f.epilogue === o.epilogue && f.bias === o.bias && f.aux === o.aux &&
    f.auxLd === o.auxLd;
}

/** The last successful gemmSync call, for the next one to repeat (gemmSync). */
interface GemmSyncMemo {
  a: GemmArray; b: GemmArray; c: GemmArray; o: GemmOptions;
  la: number; lb: number; lc: number;
  fields: GemmOptions;
  desc: NativeGemmDescriptor;
  binding: NativeGemmBinding;
}
let lastSync: GemmSyncMemo | null = null;

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

