/**
 * Loads the native addon lazily and describes it with one hand-written type.
 * Nothing outside lib/ ever sees this type; public classes wrap it.
 *
 * @internal
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { BackendUnavailableError } from './errors.js';
import type { GemmShape } from './gemmShape.js';

const require = createRequire(import.meta.url);

/** The package root (the folder holding package.json). */
export const packageRoot: string = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** What `buildInfo()` returns. */
export interface NativeBuildInfo {
  /** Compiler name and version the addon was built with, e.g. `"g++ 12.2.0"`. */
  compiler: string;
  /** `"node-gyp"` or `"cmake-js"`. */
  buildSystem: string;
  /** SIMD levels compiled into the binary, e.g. `['baseline', 'avx2', 'avx512']`. */
  simdCompiled: string[];
  /** SIMD levels this CPU can run. */
  simdCpu: string[];
  /** Level the reduction kernels use now. */
  simdActive: string;
  /** Node-API version the addon targets. */
  napiVersion: number;
  /**
   * The CUDA kernels nvcc compiled into this binary (scripts/build-kernels.sh).
   * Absent in addons built before kernels existed.
   */
  kernels?: {
    /** True when nvcc was found at build time and the images are embedded. */
    embedded: boolean;
    /** e.g. `'sm_80 sm_90 compute_90'` (SASS for those GPUs, PTX the driver JITs on newer ones); '' when not embedded. */
    architectures: string;
    /** nvcc release that compiled them, e.g. `'13.0'`; '' when not embedded. */
    nvcc: string;
    /** Why they are missing (nvcc not found, or its error); '' when embedded. */
    reason: string;
  };
}

/** Options the native communicator is constructed with (validated in lib/comm.ts). */
export interface NativeCommunicatorOptions {
  rank: number;
  size: number;
  /** POSIX shm name (`/ringtree-...`) of the segment shared by all ranks of this host. */
  shmName: string;
  /** True on the one rank that creates the segment. */
  create: boolean;
  /** Bytes per transport slot. */
  slotBytes: number;
  /** Slots per channel. */
  slots: number;
  /** Bytes of each rank's outbox in the shared segment (0: none). */
  outboxBytes: number;
  /** Default pipelining chunk (bytes). */
  chunkBytes: number;
  /** Back large user buffers with transparent huge pages before an op. */
  hugePages: boolean;
  /**
   * Spin before sleeping (false when ranks exceed usable cores; waits then
   * yield the core for up to 200 us first, RINGTREE_YIELD_US).
   */
  spin: boolean;
  /**
   * Hold finished collectives while more are queued, so one JS wake-up
   * settles several (true when the ranks' collective and JS threads together
   * outnumber usable cores). RINGTREE_COALESCE_US overrides it.
   */
  holdCompletions: boolean;
  /** Heartbeat deadline for a silent peer (ms). */
  heartbeatTimeoutMs: number;
  /** Global ranks on this host in segment order (default: all ranks). */
  localRanks?: number[];
  /** `RINGTREE_FAULT` parsed: crash this rank at (op, seq), or undefined. */
  fault?: { op: string; seq: number; stop?: boolean };
}

/** A native failure as delivered to completion callbacks. */
export interface NativeFailureRecord {
  code: number;
  message: string;
  remedy?: string;
  peer?: number;
  /** runSyncArgs: the communicator had failed before the call; nothing ran. */
  before?: boolean;
}

/** Native per-kind counters. */
export interface NativeOpStats {
  kind: string;
  count: number;
  failed: number;
  ring: number;
  tree: number;
  bytesSent: number[];
  bytesReceived: number[];
  messagesSent: number;
  messagesReceived: number;
  timeMs: number;
  ranInline: number;
}

/** One operation submitted to the native engine. */
export interface NativeOpDescriptor {
  /** Operation kind (native/cpu/op.h): 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'reduce' | 'barrier' | 'send' | 'recv'. */
  kind: string;
  dtype: number;
  op: number;
  /** Element count (per-rank count for reduceScatter/allGather). */
  count: number;
  root: number;
  peer: number;
  tag: number;
  algorithm: number;
  chunkBytes: number;
  timeoutMs: number;
}

export interface NativeCommunicator {
  /** Hand over the connected sockets (collective, point-to-point) to a remote rank; the engine dup()s them. */
  addTcpPeer(rank: number, fdCollective: number, fdP2p: number): void;
  /** Map peers, open pidfds, start the progress threads. Call after every rank constructed. */
  start(): void;
  /** Unlink the shared-memory name (idempotent). */
  unlink(): void;
  /**
   * Queue an op. `callback` runs on the JS thread once the engine will never
   * touch the buffers again: `(null)` on success or `(failure)`.
   */
  submit(desc: NativeOpDescriptor, input: ArrayBufferView | null, output: ArrayBufferView | null,
    callback: (failure: NativeFailureRecord | null) => void, stage?: boolean): void;
  /**
   * {@link submit} for collectives in runSyncArgs' argument form (numbers and
   * views; in place by the code's bit 48). `stage`: hold the op until
   * {@link flush}.
   */
  submitArgs(code: number, count: number, chunkBytes: number, timeoutMs: number,
    input: ArrayBufferView | null, output: ArrayBufferView | null,
    callback: (failure: NativeFailureRecord | null) => void, stage: boolean): void;
  /**
   * Hand collectives submitted with `stage` true to the engine. The caller
   * must call this after staging (lib/comm.ts: a microtask per burst);
   * synchronous calls, other submissions, abort and destroy flush first.
   */
  flush(): void;
  /** Post several point-to-point ops at once; one callback per op. */
  submitGroup(descs: NativeOpDescriptor[], buffers: ArrayBufferView[],
    callbacks: Array<(failure: NativeFailureRecord | null) => void>): void;
  /** Run a collective on the calling thread after queued work drains. Returns null or a failure. */
  runSync(desc: NativeOpDescriptor, input: ArrayBufferView | null, output: ArrayBufferView | null): NativeFailureRecord | null;
  /**
   * {@link runSync} with the descriptor by position (the synchronous hot
   * path: no property reads). `code` = kind + 16 dtype + 256 op + 4096
   * algorithm + 65536 (root + 1) + 2^48 if in place, kind being the native
   * op code (1 allReduce, 2 reduceScatter, 3 allGather, 4 broadcast, 5
   * reduce, 6 barrier). In place: the output is `input` and `output` is not
   * read (pass null).
   */
  runSyncArgs(code: number, count: number, chunkBytes: number, timeoutMs: number,
    input: ArrayBufferView | null, output: ArrayBufferView | null): NativeFailureRecord | null;
  /**
   * Repeat the last {@link runSyncArgs} call's op with its arguments as
   * parsed then. Only for a call whose arrays are the same objects with the
   * same lengths (their data pointers are reused); throws if there was none.
   */
  runSyncAgain(): NativeFailureRecord | null;
  /**
   * Where runSyncArgs writes each synchronous op's start and end
   * (CLOCK_MONOTONIC, ms, the clock of process.hrtime()); kept referenced.
   */
  setSyncClock(clock: Float64Array): void;
  /** Abort locally and tell every peer. */
  abort(message: string): void;
  /** Stop threads and unmap. Pending ops reject with AbortedError. */
  destroy(): void;
  /** The failure that poisoned the communicator, or null. */
  failure(): NativeFailureRecord | null;
  /** What ran, per op kind (see Communicator.stats()). */
  stats(): NativeOpStats[];
  resetStats(): void;
  /** Bytes of each local rank's outbox in the host's segment (0: none, e.g. /dev/shm had no room). */
  outboxBytes?(): number;
  /** Whether large user buffers go onto transparent huge pages (the option, and the kernel allows it). */
  hugePages?(): boolean;
  /** Per-rank sequence numbers and states as read from shared memory (for timeouts/diagnostics). */
  peerStates(): Array<{ rank: number; pid: number; collSeq: number; inOp: boolean; alive: boolean }>;
}

/** A device memory handle (native/addon/AddonCuda.cc). Views are made in TS. */
export interface NativeDeviceBuffer {
  readonly pointer: bigint;
  readonly bytes: number;
  readonly device: number;
  readonly released: boolean;
  /** Let go of the memory; ops still pending keep it until they complete. */
  release(): void;
}

/** The element-wise conversions `deviceConvert` runs (`source>destination` dtypes). */
export type NativeConvertKind = 'float32>bfloat16' | 'float32>float16' | 'bfloat16>float32' | 'float16>float32' | 'float32>float32';

/** What `cudaInfo()` returns. */
export interface NativeCudaInfo {
  driver: { loaded: boolean; path: string | null; version: number; viaGetProcAddress: boolean; memoryPools: boolean; kernels: boolean; attempts: string[] };
  devices: Array<{ index: number; name: string; computeCapability: string; totalMemory: number; pciBusId: string }>;
  nccl: { loaded: boolean; path: string | null; version: string | null; versionCode: number; attempts: string[] };
}

/** A device GEMM as the addon takes it (native/addon/AddonCuda.cc parseDeviceGemm): row-major, element counts. */
export interface NativeDeviceGemmDescriptor extends GemmShape {
  dtype: number;
  tf32: boolean;
  /** cublasLtEpilogue_t value (1: none). */
  epilogue: number;
  /** Row stride of aux: elements, or bits for the ReLU mask. */
  auxLd: number;
}

/** One NCCL call as the addon takes it. */
export interface NativeNcclCall {
  kind: 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'reduce' | 'send' | 'recv';
  send: NativeDeviceBuffer | null;
  sendOffset: number;
  sendBytes: number;
  recv: NativeDeviceBuffer | null;
  recvOffset: number;
  recvBytes: number;
  count: number;
  dtype: number;
  op: number;
  /** Root, or the peer of send/recv. */
  root: number;
}

/** The native NCCL communicator (non-blocking, its own stream and thread). */
export interface NativeNcclComm {
  /** Queue one collective, or several send/recv in one NCCL group. `callback` runs when it settles. */
  submit(name: string, calls: NativeNcclCall[], timeoutMs: number, callback: (failure: NativeFailureRecord | null) => void): void;
  /** `iterations` back-to-back runs of `calls` between two CUDA events; `ms` is their GPU time (cuEventElapsedTime). */
  submitTimed(name: string, calls: NativeNcclCall[], iterations: number, timeoutMs: number, callback: (failure: NativeFailureRecord | null, ms: number) => void): void;
  /** ncclCommAbort; pending ops fail with this status (code as in NATIVE_CODES). */
  abort(code: number, message: string, peer?: number): void;
  destroy(): void;
  failure(): NativeFailureRecord | null;
}

export interface NativeBinding {
  buildInfo(): NativeBuildInfo;
  /** `bytes` of zeroed host memory on its own 2 MiB-aligned mapping, advised for huge pages (HostMemory.cc). */
  allocHost?(bytes: number): ArrayBuffer;
  /** Load the CUDA driver from the first candidate that works (once per process). */
  cudaLoad?(candidates: string[]): NativeFailureRecord | null;
  /** Load NCCL from the first candidate that works (once per process). */
  ncclLoad?(candidates: string[]): NativeFailureRecord | null;
  cudaInfo?(): NativeCudaInfo;
  DeviceBuffer?: new (device: number, bytes: number, pointer?: bigint) => NativeDeviceBuffer;
  deviceCopy?(kind: 'htod' | 'dtoh' | 'dtod', dst: NativeDeviceBuffer | ArrayBufferView, dstOffset: number,
    src: NativeDeviceBuffer | ArrayBufferView, srcOffset: number, bytes: number, timeoutMs: number,
    callback: (failure: NativeFailureRecord | null) => void): void;
  /** 1/2/4-byte elements: `bits` a number (cuMemsetD8/16/32); 8-byte elements: a bigint (the embedded fill kernel). */
  deviceFill?(dst: NativeDeviceBuffer, byteOffset: number, count: number, elementBytes: number, bits: number | bigint,
    timeoutMs: number, callback: (failure: NativeFailureRecord | null) => void): void;
  /** dst[i] = convert(src[i] * scale) with an embedded kernel; throws BackendUnavailable (code 6) when the addon has none. */
  deviceConvert?(kind: NativeConvertKind, dst: NativeDeviceBuffer, dstOffset: number, src: NativeDeviceBuffer, srcOffset: number,
    count: number, scale: number, timeoutMs: number, callback: (failure: NativeFailureRecord | null) => void): void;
  ncclUniqueId?(): Uint8Array;
  /** Load cuBLASLt beside the first libcublas candidate that works (once per process). */
  cublasLoad?(candidates: string[]): NativeFailureRecord | null;
  /** One cuBLASLt GEMM on the device's stream (lib/deviceGemm.ts); offsets in bytes; bias/aux null when the epilogue takes none. */
  deviceGemm?(desc: NativeDeviceGemmDescriptor, a: NativeDeviceBuffer, aOffset: number, b: NativeDeviceBuffer, bOffset: number,
    c: NativeDeviceBuffer, cOffset: number, bias: NativeDeviceBuffer | null, biasOffset: number, aux: NativeDeviceBuffer | null,
    auxOffset: number, timeoutMs: number, callback: (failure: NativeFailureRecord | null) => void): void;
  /** `iterations` GEMMs back to back between two CUDA events (after one untimed warm-up); `ms` is their GPU time. */
  deviceGemmTimed?(desc: NativeDeviceGemmDescriptor, a: NativeDeviceBuffer, aOffset: number, b: NativeDeviceBuffer, bOffset: number,
    c: NativeDeviceBuffer, cOffset: number, bias: NativeDeviceBuffer | null, biasOffset: number, aux: NativeDeviceBuffer | null,
    auxOffset: number, iterations: number, timeoutMs: number, callback: (failure: NativeFailureRecord | null, ms: number) => void): void;
  /** `parent` given: made by ncclCommSplit(parent, splitColor, splitKey) (collective over the parent's ranks; -1: none). */
  NcclComm?: new (options: { device: number; rank: number; size: number; uniqueId: Uint8Array; algorithm?: string; initTimeoutMs: number;
    parent?: NativeNcclComm; splitColor?: number; splitKey?: number }) => NativeNcclComm;
  /** Test hook: out[i] = a[i] (op) b[i]. */
  reduceForTest(out: ArrayBufferView, a: ArrayBufferView, b: ArrayBufferView, dtype: number, op: number): void;
  /** Test hook: data[i] /= divisor (the 'avg' finish). */
  divideForTest(data: ArrayBufferView, dtype: number, divisor: number): void;
  /** Force a SIMD level ('baseline' | 'avx2' | 'avx512'); false when the CPU lacks it. */
  setSimdLevel(level: string): boolean;
  activeSimdLevel(): string;
  Communicator: new (options: NativeCommunicatorOptions) => NativeCommunicator;
}

let cached: NativeBinding | undefined;
let cachedError: BackendUnavailableError | undefined;

/** Where the loader looks, in order. */
export function addonCandidates(): string[] {
  const list: string[] = [];
  const override = process.env.RINGTREE_ADDON_PATH;
  if (override) list.push(path.resolve(override));
  list.push(path.join(packageRoot, 'build', 'Release', 'ringtree.node'));
  list.push(path.join(packageRoot, 'build-cmake', 'Release', 'ringtree.node'));
  list.push(path.join(packageRoot, 'build-cmake', 'ringtree.node'));
  return list;
}

/**
 * Load the addon once. Throws one {@link BackendUnavailableError} listing every
 * attempt and the possible fixes; never crashes the process.
 */
export function loadBinding(): NativeBinding {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const attempts: string[] = [];
  const tryLoad = (what: string, fn: () => unknown): NativeBinding | undefined => {
    try {
      const mod = fn() as NativeBinding;
      if (typeof mod?.buildInfo !== 'function') throw new Error('not a ringtree addon (no buildInfo export)');
      return mod;
    } catch (err) {
      attempts.push(`${what}: ${(err as Error).message.split('\n')[0]}`);
      return undefined;
    }
  };
  for (const file of addonCandidates()) {
    if (!existsSync(file)) {
      attempts.push(`${file}: not found`);
      continue;
    }
    const mod = tryLoad(file, () => require(file));
    if (mod) return (cached = mod);
  }
  const viaPrebuild = tryLoad(`node-gyp-build(${packageRoot})`, () => {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
    return nodeGypBuild(packageRoot);
  });
  if (viaPrebuild) return (cached = viaPrebuild);
  cachedError = new BackendUnavailableError(
    `The ringtree native addon could not be loaded. Tried:\n  - ${attempts.join('\n  - ')}`,
    {
      op: 'loadAddon',
      remedy:
        'Possible solutions:\n' +
        '  - Rebuild from source: `npm rebuild ringtree` (needs python3, make and g++ >= 10).\n' +
        '  - If a prebuild failed with a GLIBC/GLIBCXX version error, your glibc is older than 2.28: build from source.\n' +
        '  - Set RINGTREE_ADDON_PATH to a ringtree.node you built yourself.\n' +
        '  - Only Linux x64/arm64 are supported.',
    },
  );
  throw cachedError;
}

/** True when the addon loads (never throws). */
export function bindingAvailable(): boolean {
  try {
    loadBinding();
    return true;
  } catch {
    return false;
  }
}
