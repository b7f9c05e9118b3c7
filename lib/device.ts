/**
 * GPU memory: the CUDA driver and NCCL loader, and {@link DeviceArray}.
 *
 * The driver (`libcuda.so.1`) and NCCL (`libnccl.so.2`) are found at run time,
 * never linked: `RINGTREE_CUDA_DRIVER_PATH` / `RINGTREE_NCCL_PATH` first, then
 * the loader's own search (`LD_LIBRARY_PATH`, system folders), `CUDA_HOME`,
 * and pip's `nvidia/nccl/lib` folders. Where they are missing, device arrays
 * throw {@link BackendUnavailableError} naming what is missing and the fix;
 * host arrays keep working.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { loadBinding } from './binding.js';
import type { NativeBinding, NativeConvertKind, NativeCudaInfo, NativeDeviceBuffer, NativeFailureRecord } from './binding.js';
import { DTYPE_CODES, dtypeSize, isDType, toBfloat16Bits, toFloat16Bits } from './dtype.js';
import type { DType } from './dtype.js';
import { BackendUnavailableError, InvalidArgumentError, errorFromNative } from './errors.js';

/** Where the CUDA driver is looked for, in order. */
export function cudaDriverCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const list: string[] = [];
  if (env.RINGTREE_CUDA_DRIVER_PATH) list.push(env.RINGTREE_CUDA_DRIVER_PATH);
  list.push('libcuda.so.1');
  for (const dir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/local/nvidia/lib64', '/usr/lib/wsl/lib']) {
    list.push(path.join(dir, 'libcuda.so.1'));
  }
  return [...new Set(list)];
}

let pipDirsCache: string[] | undefined;
/** site-packages folders of python3 (asked once, bounded), plus the usual ones. */
function pythonSitePackages(): string[] {
  if (pipDirsCache) return pipDirsCache;
  const dirs: string[] = [];
  try {
    const out = execFileSync('python3', ['-c', 'import site,sys;print("\\n".join(site.getsitepackages()+[site.getusersitepackages()]+sys.path))'],
      { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'ignore'] });
    dirs.push(...out.split('\n').map((l) => l.trim()).filter(Boolean));
  } catch {
    // No python3: the fixed folders below still get searched.
  }
  for (const base of ['/usr/local/lib', '/usr/lib']) {
    try {
      for (const d of readdirSync(base)) {
        if (/^python3/.test(d)) dirs.push(path.join(base, d, 'dist-packages'), path.join(base, d, 'site-packages'));
      }
    } catch {
      // Folder absent.
    }
  }
  pipDirsCache = [...new Set(dirs)];
  return pipDirsCache;
}

/** Where NCCL is looked for, in order. */
export function ncclCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const list: string[] = [];
  const override = env.RINGTREE_NCCL_PATH;
  if (override) {
    let isDir = false;
    try { isDir = statSync(override).isDirectory(); } catch { /* a file name for dlopen */ }
    list.push(isDir ? path.join(override, 'libnccl.so.2') : override);
  }
  list.push('libnccl.so.2');
  for (const home of [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda']) {
    if (home) list.push(path.join(home, 'lib64', 'libnccl.so.2'), path.join(home, 'lib', 'libnccl.so.2'));
  }
  // pip wheels: nvidia-nccl-cu12/-cu13 install nvidia/nccl/lib; the CUDA 13 layout may also use nvidia/cu13/lib.
  for (const site of pythonSitePackages()) {
    for (const sub of ['nccl', 'cu13', 'cu12']) {
      const file = path.join(site, 'nvidia', sub, 'lib', 'libnccl.so.2');
      if (existsSync(file)) list.push(file);
    }
  }
  return [...new Set(list)];
}

/** Where cuBLAS is looked for, in order (cuBLASLt is looked for beside it). */
export function cublasCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const names = ['libcublas.so.13', 'libcublas.so.12', 'libcublas.so.11'];
  const list: string[] = [];
  const override = env.RINGTREE_CUBLAS_PATH;
  if (override) {
    let isDir = false;
    try { isDir = statSync(override).isDirectory(); } catch { /* a file name for dlopen */ }
    if (isDir) list.push(...names.map((n) => path.join(override, n)));
    else list.push(override);
  }
  list.push(...names);
  for (const home of [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda']) {
    if (home) for (const n of names) list.push(path.join(home, 'lib64', n), path.join(home, 'lib', n));
  }
  // pip wheels: nvidia-cublas-cu12 installs nvidia/cublas/lib, the CUDA 13 wheels nvidia/cu13/lib.
  for (const site of pythonSitePackages()) {
    for (const sub of ['cublas', 'cu13', 'cu12']) {
      for (const n of names) {
        const file = path.join(site, 'nvidia', sub, 'lib', n);
        if (existsSync(file)) list.push(file);
      }
    }
  }
  return [...new Set(list)];
}

/** cuBLAS as found at run time (for doctor/info; device GEMM loads it itself, see {@link requireCublas}). */
export interface CublasProbe {
  loaded: boolean;
  path: string | null;
  /** "major.minor.patch" from cublasGetProperty. */
  version: string | null;
  /** libcublasLt beside it, when it loads. */
  ltPath: string | null;
  /** Every place tried that failed, with why. */
  attempts: string[];
}

/** Look for cuBLAS; never throws (null when this addon has no probe). @internal */
export function probeCublas(env: NodeJS.ProcessEnv = process.env): CublasProbe | null {
  const b = loadBinding() as NativeBinding & { cublasProbe?: (candidates: string[]) => CublasProbe };
  return typeof b.cublasProbe === 'function' ? b.cublasProbe(cublasCandidates(env)) : null;
}

interface GpuBinding extends NativeBinding {
  cudaLoad: NonNullable<NativeBinding['cudaLoad']>;
  ncclLoad: NonNullable<NativeBinding['ncclLoad']>;
  cudaInfo: NonNullable<NativeBinding['cudaInfo']>;
  DeviceBuffer: NonNullable<NativeBinding['DeviceBuffer']>;
  deviceCopy: NonNullable<NativeBinding['deviceCopy']>;
  deviceFill: NonNullable<NativeBinding['deviceFill']>;
  deviceConvert?: NativeBinding['deviceConvert'];
  ncclUniqueId: NonNullable<NativeBinding['ncclUniqueId']>;
  NcclComm: NonNullable<NativeBinding['NcclComm']>;
}

let driverFailure: NativeFailureRecord | null | undefined;
let ncclFailure: NativeFailureRecord | null | undefined;

function gpuBinding(): GpuBinding {
  const b = loadBinding();
  if (typeof b.cudaLoad !== 'function') {
    throw new BackendUnavailableError('this build of the ringtree addon has no GPU backend', { op: 'gpu', remedy: 'Rebuild ringtree (`npm rebuild ringtree`).' });
  }
  return b as GpuBinding;
}

/**
 * Load the CUDA driver (once per process) and return the binding.
 * @throws {BackendUnavailableError} naming every place tried and the fix.
 * @internal
 */
export function requireDriver(op = 'gpu'): GpuBinding {
  const b = gpuBinding();
  if (driverFailure === undefined) driverFailure = b.cudaLoad(cudaDriverCandidates());
  if (driverFailure) throw errorFromNative(driverFailure, { op });
  return b;
}

/**
 * Load the CUDA driver and NCCL (once per process).
 * @throws {BackendUnavailableError} naming what is missing and the fix.
 * @internal
 */
export function requireNccl(op = 'nccl'): GpuBinding {
  const b = requireDriver(op);
  if (ncclFailure === undefined) ncclFailure = b.ncclLoad(ncclCandidates());
  if (ncclFailure) throw errorFromNative(ncclFailure, { op });
  return b;
}

let cublasFailure: NativeFailureRecord | null | undefined;

/**
 * Load the CUDA driver and cuBLASLt (once per process, on the first device
 * GEMM): libcublas from {@link cublasCandidates} (`RINGTREE_CUBLAS_PATH`, the
 * loader's search, `CUDA_HOME`, pip's `nvidia/cublas/lib`), libcublasLt
 * beside it.
 * @throws {BackendUnavailableError} naming every place tried and the fix.
 * @internal
 */
export function requireCublas(op = 'gemm'): GpuBinding & Required<Pick<NativeBinding, 'cublasLoad' | 'deviceGemm' | 'deviceGemmTimed'>> {
  const b = requireDriver(op);
  if (typeof b.cublasLoad !== 'function' || typeof b.deviceGemm !== 'function' || typeof b.deviceGemmTimed !== 'function') {
    throw new BackendUnavailableError('this build of the ringtree addon has no device GEMM', { op, remedy: 'Rebuild ringtree (`npm rebuild ringtree`).' });
  }
  if (cublasFailure === undefined) cublasFailure = b.cublasLoad(cublasCandidates());
  if (cublasFailure) throw errorFromNative(cublasFailure, { op });
  return b as GpuBinding & Required<Pick<NativeBinding, 'cublasLoad' | 'deviceGemm' | 'deviceGemmTimed'>>;
}

/** Try to load both and report; never throws. @internal */
export function probeGpu(): { info: NativeCudaInfo | null; driverError: string | null; ncclError: string | null } {
  let driverError: string | null = null;
  let ncclError: string | null = null;
  let b: GpuBinding;
  try {
    b = gpuBinding();
  } catch (e) {
    return { info: null, driverError: (e as Error).message, ncclError: null };
  }
  try { requireDriver(); } catch (e) { driverError = (e as Error).message; }
  if (!driverError) {
    try { requireNccl(); } catch (e) { ncclError = (e as Error).message; }
  }
  return { info: b.cudaInfo(), driverError, ncclError };
}

/** Default deadline of DeviceArray copies and fills, ms. */
export const DEVICE_OP_TIMEOUT_MS = 300_000;

/** Options of {@link DeviceArray.alloc} and {@link DeviceArray.fromHost}. */
export interface DeviceArrayOptions {
  /** CUDA device ordinal. Default: `LOCAL_RANK` modulo the GPU count, else 0. */
  device?: number;
}

/** Host arrays that can be copied to and from device arrays. */
export type HostTypedArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array | BigInt64Array | Uint16Array;

function defaultDevice(b: GpuBinding): number {
  const local = Number(process.env.LOCAL_RANK ?? 0);
  const count = b.cudaInfo().devices.length;
  return count > 0 && Number.isInteger(local) && local >= 0 ? local % count : 0;
}

function hostDType(a: ArrayBufferView): DType | undefined {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  if (a instanceof Int8Array) return 'int8';
  if (a instanceof Uint8Array) return 'uint8';
  if (a instanceof Int32Array) return 'int32';
  if (a instanceof BigInt64Array) return 'int64';
  return undefined;
}

/** Conversions {@link DeviceArray.convertFrom} runs (`source>destination`). */
const CONVERT_KINDS: readonly NativeConvertKind[] = ['float32>bfloat16', 'float32>float16', 'bfloat16>float32', 'float16>float32', 'float32>float32'];

/** Run a native call that may throw a Status (e.g. no kernels) and rethrow it as the typed error. */
function callNative(op: string, fn: () => void): void {
  try {
    fn();
  } catch (e) {
    const err = e as Error & { nativeCode?: number; remedy?: string; peer?: number };
    if (typeof err.nativeCode === 'number') throw errorFromNative({ code: err.nativeCode, message: err.message, remedy: err.remedy, peer: err.peer }, { op });
    throw e;
  }
}

function settleInto(resolve: () => void, reject: (e: unknown) => void, op: string) {
  return (failure: NativeFailureRecord | null) => {
    if (failure) reject(errorFromNative(failure, { op }));
    else resolve();
  };
}

/** @internal See {@link DeviceArray.lastIssue}. */
export interface DeviceIssue {
  /** Identity of the stream (the NCCL backend object). */
  stream: object;
  /** Resolves once the op was posted to that stream. */
  issued: Promise<void>;
  /** The op's completion, as set into `tail`. */
  settled: Promise<void>;
}

/**
 * An array in GPU memory. Communicator calls given device arrays run on NCCL;
 * host TypedArrays run on the CPU engine.
 *
 * Copies and fills are asynchronous and ordered with every other operation on
 * the same array (including collectives). An operation keeps its arrays alive
 * until it completed on the GPU, even after {@link DeviceArray.dispose}.
 */
export class DeviceArray {
  /** Element type. */
  readonly dtype: DType;
  /** Element count. */
  readonly length: number;
  /** CUDA device ordinal. */
  readonly device: number;
  /** Offset of this array (a view) in its allocation, bytes. */
  readonly byteOffset: number;
  /** @internal */
  readonly buffer: NativeDeviceBuffer;
  private readonly root: DeviceArray | null;
  private disposedSelf = false;
  // Operations submitted and not yet settled on this allocation (kept on the root):
  // dispose() defers the release of the memory handle until they settled.
  private holds = 0;
  private ownTail: Promise<void> = Promise.resolve();

  /**
   * @internal The last operation that uses this allocation (ordering). Kept on
   * the root, so a view's ops are ordered with its parent's and its siblings'
   * (copies and fills run on the device stream, collectives on NCCL's).
   */
  get tail(): Promise<void> {
    return (this.root ?? this).ownTail;
  }

  set tail(p: Promise<void>) {
    (this.root ?? this).ownTail = p;
  }

  private ownLastIssue: DeviceIssue | null = null;

  /**
   * @internal The last op a communicator put on this allocation's arrays, with
   * when it was posted to its stream: a later op of the same communicator
   * (same stream) need only wait for that, not for its completion. Valid
   * while its `settled` is still {@link tail}. Kept on the root.
   */
  get lastIssue(): DeviceIssue | null {
    return (this.root ?? this).ownLastIssue;
  }

  set lastIssue(v: DeviceIssue | null) {
    (this.root ?? this).ownLastIssue = v;
  }

  /** @internal Use {@link DeviceArray.alloc}, {@link DeviceArray.fromHost} or {@link DeviceArray.fromPointer}. */
  constructor(buffer: NativeDeviceBuffer, dtype: DType, length: number, byteOffset: number, root: DeviceArray | null) {
    this.buffer = buffer;
    this.dtype = dtype;
    this.length = length;
    this.device = buffer.device;
    this.byteOffset = byteOffset;
    this.root = root;
  }

  /**
   * Allocate `length` elements of `dtype` on a GPU (contents undefined).
   * @throws {InvalidArgumentError} bad dtype/length/device.
   * @throws {BackendUnavailableError} no CUDA driver/GPU, or out of device memory.
   */
  static alloc(dtype: DType, length: number, options: DeviceArrayOptions = {}): DeviceArray {
    if (!isDType(dtype)) throw new InvalidArgumentError(`\`dtype\` must be a dtype name, got ${String(dtype)}`, { op: 'DeviceArray.alloc' });
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`\`length\` must be a non-negative integer, got ${String(length)}`, { op: 'DeviceArray.alloc' });
    }
    const b = requireDriver('DeviceArray.alloc');
    const device = options.device ?? defaultDevice(b);
    if (!Number.isInteger(device) || device < 0) throw new InvalidArgumentError(`\`device\` must be a device ordinal, got ${String(device)}`, { op: 'DeviceArray.alloc' });
    let buffer: NativeDeviceBuffer;
    try {
      buffer = new b.DeviceBuffer(device, length * dtypeSize(dtype));
    } catch (e) {
      const err = e as Error & { nativeCode?: number; remedy?: string };
      throw errorFromNative({ code: err.nativeCode ?? 7, message: err.message, remedy: err.remedy }, { op: 'DeviceArray.alloc' });
    }
    return new DeviceArray(buffer, dtype, length, 0, null);
  }

  /**
   * Allocate a device array and copy `host` into it. 16-bit floats come in a
   * Uint16Array with `dtype`. Resolves once the copy completed.
   */
  static async fromHost(host: HostTypedArray, options: DeviceArrayOptions & { dtype?: DType } = {}): Promise<DeviceArray> {
    const dtype = options.dtype ?? hostDType(host);
    if (!dtype) throw new InvalidArgumentError('a Uint16Array needs `dtype` (\'float16\' or \'bfloat16\')', { op: 'DeviceArray.fromHost' });
    const arr = DeviceArray.alloc(dtype, host.length, options);
    await arr.copyFrom(host);
    return arr;
  }

  /**
   * Wrap device memory owned by someone else (e.g. another framework's
   * tensor) without a copy. ringtree never frees it; keep it alive while in use.
   * @param pointer device address (CUdeviceptr) as a bigint.
   */
  static fromPointer(pointer: bigint, dtype: DType, length: number, options: { device: number }): DeviceArray {
    if (typeof pointer !== 'bigint' || pointer < 0n) throw new InvalidArgumentError('`pointer` must be a non-negative bigint', { op: 'DeviceArray.fromPointer' });
    if (!isDType(dtype)) throw new InvalidArgumentError(`\`dtype\` must be a dtype name, got ${String(dtype)}`, { op: 'DeviceArray.fromPointer' });
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidArgumentError('`length` must be a non-negative integer', { op: 'DeviceArray.fromPointer' });
    const b = requireDriver('DeviceArray.fromPointer');
    return new DeviceArray(new b.DeviceBuffer(options.device, length * dtypeSize(dtype), pointer), dtype, length, 0, null);
  }

  /** Device address of element 0 (for sharing with other frameworks). */
  get pointer(): bigint {
    this.checkLive('pointer');
    return this.buffer.pointer + BigInt(this.byteOffset);
  }

  /** Size in bytes. */
  get byteLength(): number {
    return this.length * dtypeSize(this.dtype);
  }

  /** True once this array (or the array it views) was disposed. */
  get disposed(): boolean {
    return this.disposedSelf || (this.root?.disposed ?? false) || this.buffer.released;
  }

  /** A view of `length` elements from element `offset` (no copy). Disposing the parent invalidates it. */
  view(offset: number, length = this.length - offset): DeviceArray {
    this.checkLive('view');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.length) {
      throw new InvalidArgumentError(`view(${offset}, ${length}) is outside an array of ${this.length} elements`, { op: 'DeviceArray.view' });
    }
    return new DeviceArray(this.buffer, this.dtype, length, this.byteOffset + offset * dtypeSize(this.dtype), this.root ?? this);
  }

  /** Copy `host` (same element count and type) into this array. Resolves when done. */
  copyFrom(host: HostTypedArray): Promise<void> {
    return this.enqueue('copyFrom', (b, done) => {
      this.checkHost(host, 'copyFrom');
      b.deviceCopy('htod', this.buffer, this.byteOffset, host, 0, this.byteLength, DEVICE_OP_TIMEOUT_MS, done);
    });
  }

  /** Copy this array into `host` (same element count and type). Resolves when the bytes are there. */
  copyTo(host: HostTypedArray): Promise<void> {
    return this.enqueue('copyTo', (b, done) => {
      this.checkHost(host, 'copyTo');
      b.deviceCopy('dtoh', host, 0, this.buffer, this.byteOffset, this.byteLength, DEVICE_OP_TIMEOUT_MS, done);
    });
  }

  /** Copy into a new host TypedArray (Uint16Array for 16-bit floats). */
  async toHost(): Promise<HostTypedArray> {
    const host = newHost(this.dtype, this.length);
    await this.copyTo(host);
    return host;
  }

  /** Copy `src` (same dtype and length, any device array) into this array. */
  copyFromDevice(src: DeviceArray): Promise<void> {
    if (!(src instanceof DeviceArray) || src.dtype !== this.dtype || src.length !== this.length) {
      return Promise.reject(new InvalidArgumentError('`src` must be a DeviceArray of the same dtype and length', { op: 'copyFromDevice' }));
    }
    const before = src.tail;
    return this.enqueue('copyFromDevice', (b, done) => {
      b.deviceCopy('dtod', this.buffer, this.byteOffset, src.buffer, src.byteOffset, this.byteLength, DEVICE_OP_TIMEOUT_MS, done);
    }, [before], [src]);
  }

  /**
   * Set every element to `value` (a number; a bigint for int64). 1-, 2- and
   * 4-byte elements use the driver's memsets; 8-byte ones (float64, int64)
   * run ringtree's embedded fill kernel on the same stream.
   * @throws {BackendUnavailableError} (rejection) for float64/int64 when the
   *   addon was built without nvcc (no kernels), naming the fix.
   */
  fill(value: number | bigint): Promise<void> {
    return this.enqueue('fill', (b, done) => {
      const size = dtypeSize(this.dtype);
      const bytes = new Uint8Array(size);
      const dv = new DataView(bytes.buffer);
      switch (this.dtype) {
        case 'float32': dv.setFloat32(0, Number(value), true); break;
        case 'float64': dv.setFloat64(0, Number(value), true); break;
        case 'float16': dv.setUint16(0, toFloat16Bits(Number(value)), true); break;
        case 'bfloat16': dv.setUint16(0, toBfloat16Bits(Number(value)), true); break;
        case 'int8': dv.setInt8(0, Number(value)); break;
        case 'uint8': dv.setUint8(0, Number(value)); break;
        case 'int32': dv.setInt32(0, Number(value), true); break;
        case 'int64': dv.setBigInt64(0, BigInt(value), true); break;
      }
      const bits = size === 1 ? dv.getUint8(0) : size === 2 ? dv.getUint16(0, true) : size === 4 ? dv.getUint32(0, true) : dv.getBigUint64(0, true);
      callNative('DeviceArray.fill', () => b.deviceFill(this.buffer, this.byteOffset, this.length, size, bits, DEVICE_OP_TIMEOUT_MS, done));
    });
  }

  /**
   * Write `src` (same length, same device), converted to this array's dtype
   * and multiplied by `scale`, into this array: `this[i] = round(src[i] * scale)`,
   * with the product in float32 and round to nearest-even, bit for bit what
   * {@link float32ToBfloat16} / {@link float32ToFloat16} / {@link bfloat16ToFloat32} /
   * {@link float16ToFloat32} give on the host (NaNs keep their payload and are
   * never scaled; subnormals are kept). Supported: float32 to bfloat16,
   * float16 or float32, and bfloat16/float16 to float32. Runs one of
   * ringtree's embedded CUDA kernels on the device stream, ordered after
   * pending work on both arrays. In place (`src` the same range as this
   * array) works for float32 to float32 only; any other overlap is rejected.
   *
   * @param scale a finite float32 factor (default 1).
   * @returns a Promise that rejects with {@link InvalidArgumentError} for an
   *   unsupported pair, a length or device mismatch or a bad scale, and with
   *   {@link BackendUnavailableError} when the addon was built without nvcc.
   */
  convertFrom(src: DeviceArray, options: { scale?: number } = {}): Promise<void> {
    const op = 'DeviceArray.convertFrom';
    const scale = options.scale ?? 1;
    const kind = `${src?.dtype}>${this.dtype}` as NativeConvertKind;
    if (!(src instanceof DeviceArray)) return Promise.reject(new InvalidArgumentError(`\`src\` must be a DeviceArray, got ${String(src)}`, { op }));
    if (!CONVERT_KINDS.includes(kind)) {
      return Promise.reject(new InvalidArgumentError(`cannot convert ${src.dtype} to ${this.dtype}; supported: ${CONVERT_KINDS.map((k) => k.replace('>', ' to ')).join(', ')}`, { op }));
    }
    if (src.length !== this.length) return Promise.reject(new InvalidArgumentError(`\`src\` has ${src.length} elements but this array has ${this.length}`, { op }));
    if (src.device !== this.device) return Promise.reject(new InvalidArgumentError(`\`src\` is on device ${src.device} but this array is on device ${this.device}`, { op }));
    if (typeof scale !== 'number' || !Number.isFinite(scale) || !Number.isFinite(Math.fround(scale))) {
      return Promise.reject(new InvalidArgumentError(`\`scale\` must be a finite float32 number, got ${String(scale)}`, { op }));
    }
    const same = src.buffer === this.buffer;
    const exactlyInPlace = same && kind === 'float32>float32' && src.byteOffset === this.byteOffset;
    if (same && !exactlyInPlace && src.byteOffset < this.byteOffset + this.byteLength && this.byteOffset < src.byteOffset + src.byteLength) {
      return Promise.reject(new InvalidArgumentError('`src` overlaps this array (only a float32 to float32 scale of exactly the same range may run in place)', { op }));
    }
    const before = src.tail;
    return this.enqueue(op, (b, done) => {
      if (typeof b.deviceConvert !== 'function') {
        throw new BackendUnavailableError('this build of the ringtree addon has no device conversions', { op, remedy: 'Rebuild ringtree (`npm rebuild ringtree`).' });
      }
      callNative(op, () => b.deviceConvert!(kind, this.buffer, this.byteOffset, src.buffer, src.byteOffset, this.length, scale, DEVICE_OP_TIMEOUT_MS, done));
    }, same ? [] : [before], same ? [] : [src]);
  }

  /**
   * Let go of the memory (the root allocation; on a view, only the view).
   * Pending operations keep it until they complete. Idempotent.
   */
  dispose(): void {
    if (this.disposedSelf) return;
    this.disposedSelf = true;
    if (!this.root && this.holds === 0) this.buffer.release();
  }

  /**
   * @internal Called synchronously when an operation on this array is
   * submitted (after which dispose() no longer cancels it): keeps the memory
   * handle until the returned function runs (once, when the op settled).
   * @throws {InvalidArgumentError} the array was already disposed.
   */
  hold(op: string): () => void {
    this.checkLive(op);
    const owner = this.root ?? this;
    owner.holds++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--owner.holds === 0 && owner.disposedSelf && !owner.buffer.released) owner.buffer.release();
    };
  }

  /** `using x = DeviceArray.alloc(...)` support. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  checkLive(op: string): void {
    if (this.disposed) throw new InvalidArgumentError('the DeviceArray was disposed', { op });
  }

  private checkHost(host: HostTypedArray, op: string): void {
    if (!ArrayBuffer.isView(host)) throw new InvalidArgumentError(`expected a TypedArray, got ${String(host)}`, { op });
    const d = hostDType(host) ?? (host instanceof Uint16Array && (this.dtype === 'float16' || this.dtype === 'bfloat16') ? this.dtype : undefined);
    if (d !== this.dtype || host.length !== this.length) {
      throw new InvalidArgumentError(`expected ${this.length} ${this.dtype} elements, got a ${host.constructor.name} of ${host.length}`, { op });
    }
  }

  /** @internal Order `start` after this array's earlier operations (and `after`). */
  enqueue(op: string, start: (b: GpuBinding, done: (f: NativeFailureRecord | null) => void) => void,
    after: Promise<void>[] = [], also: DeviceArray[] = []): Promise<void> {
    let releases: Array<() => void>;
    try {
      releases = [this, ...also].map((a) => a.hold(op));
    } catch (e) {
      return Promise.reject(e);
    }
    const prior = Promise.allSettled([this.tail, ...after]);
    const p = prior.then(() => new Promise<void>((resolve, reject) => {
      try {
        start(requireDriver(op), settleInto(resolve, reject, op));
      } catch (e) {
        reject(e);
      }
    }));
    const settled = p.catch(() => undefined).finally(() => { for (const r of releases) r(); });
    this.tail = settled;
    for (const a of also) a.tail = settled;
    return p;
  }
}

/** A host TypedArray of the right kind for `dtype` (Uint16Array for 16-bit floats). */
export function newHost(dtype: DType, length: number): HostTypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'int8': return new Int8Array(length);
    case 'uint8': return new Uint8Array(length);
    case 'int32': return new Int32Array(length);
    case 'int64': return new BigInt64Array(length);
    default: return new Uint16Array(length);
  }
}

/** True for a {@link DeviceArray}. */
export function isDeviceArray(v: unknown): v is DeviceArray {
  return v instanceof DeviceArray;
}

export { DTYPE_CODES };
