/**
 * The Communicator: collectives and point-to-point over the CPU engine.
 *
 * Host TypedArrays run on ringtree's own shared-memory engine. Every call is
 * checked here first, where the message can name the argument, and again
 * cheaply in native code.
 *
 * @module
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import type { NativeCommunicator, NativeFailureRecord, NativeNcclComm, NativeOpDescriptor } from './binding.js';
import type { Store } from './store.js';
import { assemble } from './assemble.js';
import { DTYPE_CODES, REDUCE_OP_CODES, dtypeOf, dtypeSize, isReduceOpName, REDUCE_OPS } from './dtype.js';
import type { DType, ReduceOpName } from './dtype.js';
import {
  AbortedError,
  InvalidArgumentError,
  RingtreeError,
  errorFromNative,
} from './errors.js';
import { FlightRecorder } from './flightRecorder.js';
import { autoAlgorithm } from './algorithmSelection.js';
// GPU dispatch (issue 5): device arrays go to NCCL, host arrays to the CPU engine.
import { DeviceArray, isDeviceArray } from './device.js';
import { NcclBackend } from './ncclBackend.js';
import { NCCL_ALGORITHMS } from './ncclBackend.js';
import type { NcclAlgorithm, NcclOp } from './ncclBackend.js';
import { BackendUnavailableError } from './errors.js';

/** Host arrays the CPU engine accepts. 16-bit floats travel in a Uint16Array with `{ dtype }`. */
export type HostArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int32Array
  | BigInt64Array
  | Uint16Array;

/** Algorithm names. `'auto'` picks per call. */
export type Algorithm = 'ring' | 'tree' | 'auto';

/** Collective names as used by {@link Communicator.algorithms}. */
export type CollectiveName = 'allReduce' | 'reduceScatter' | 'allGather' | 'broadcast' | 'reduce' | 'barrier';

/**
 * Which (collective, algorithm) pairs the CPU engine runs. `'auto'` is
 * accepted everywhere and resolves to one of these.
 */
export const CPU_ALGORITHMS: Readonly<Record<CollectiveName, readonly Exclude<Algorithm, 'auto'>[]>> = Object.freeze({
  allReduce: ['ring', 'tree'],
  reduceScatter: ['ring'],
  allGather: ['ring'],
  broadcast: ['ring', 'tree'],
  reduce: ['ring', 'tree'],
  barrier: ['ring'],
});

const ALGORITHM_CODES = { ring: 0, tree: 1 } as const;

/** Options every operation takes. */
export interface OpOptions {
  /** Deadline for this operation in ms. Default: the communicator's (300 000 ms unless set at init). */
  timeoutMs?: number;
  /**
   * Aborts the operation. A collective cannot be cancelled on one rank alone:
   * once it was submitted, the signal aborts the whole communicator (every rank
   * gets AbortedError). A signal that is already aborted rejects before anything moves.
   */
  signal?: AbortSignal;
  /** 16-bit float arrays carried in a Uint16Array: `'float16'` or `'bfloat16'`. */
  dtype?: DType;
}

/** Options of the collectives. */
export interface CollectiveOptions extends OpOptions {
  /**
   * `'ring'` (default), `'tree'` where {@link CPU_ALGORITHMS} lists it, or
   * `'auto'` (tree below a measured crossover size, ring above; see
   * lib/algorithmSelection.ts). An unsupported pair is an InvalidArgumentError.
   */
  algorithm?: Algorithm;
  /** Pipelining chunk in bytes (default: the communicator's, 256 KiB; capped at the transport slot). */
  chunkBytes?: number;
}

/** Options of allReduce. */
export interface AllReduceOptions extends CollectiveOptions {
  /** Reduction, default `'sum'`. `'avg'` on integers is the sum divided by the world size, truncated. */
  op?: ReduceOpName;
  /** Output array (same type and length as the input; a DeviceArray when `x` is one). Absent: in place. */
  out?: HostArray | DeviceArray;
}

/** Options of reduceScatter. */
export interface ReduceScatterOptions extends CollectiveOptions {
  /** Reduction, default `'sum'`. */
  op?: ReduceOpName;
}

/** Options of broadcast. */
export interface BroadcastOptions extends CollectiveOptions {
  /** The rank whose data is sent. Default 0. */
  root?: number;
  /** Output array; absent: in place (`x` is the output on every rank and the input on the root). */
  out?: HostArray | DeviceArray;
}

/** Options of reduce. */
export interface ReduceOptions extends CollectiveOptions {
  /** The rank that receives the result. Default 0. */
  root?: number;
  /** Reduction, default `'sum'`. */
  op?: ReduceOpName;
  /** Output array, used on the root only; absent: in place on the root. Non-roots' inputs are never written. */
  out?: HostArray | DeviceArray;
}

/** Options of send and recv. */
export interface P2pOptions extends OpOptions {
  /**
   * Message tag (a 32-bit integer, default 0); a recv matches the oldest send
   * with the same tag from its peer. Host arrays only: NCCL has no tags
   * (device messages match in order per peer), so a non-zero tag with a
   * DeviceArray is an InvalidArgumentError.
   */
  tag?: number;
}

/**
 * One side of {@link Communicator.sendRecv} and an entry of {@link Communicator.group}.
 * All entries of one call are host arrays (CPU engine) or all are
 * DeviceArrays (one NCCL group); mixing them is an InvalidArgumentError.
 */
export type P2pSpec =
  | { send: HostArray | DeviceArray; to: number; tag?: number; dtype?: DType }
  | { recv: HostArray | DeviceArray; from: number; tag?: number; dtype?: DType };

/** Engine tuning, fixed when the communicator is made. */
export interface EngineTuning {
  /** Bytes per shared-memory slot (default 256 KiB; env RINGTREE_SLOT_BYTES). */
  slotBytes: number;
  /** Slots per channel (default 8; env RINGTREE_SLOTS). */
  slots: number;
  /**
   * Bytes of each rank's shared-memory outbox (default 8 MiB; env RINGTREE_OUTBOX_BYTES; 0: none): what
   * the host's segment has, which is 0 where /dev/shm had room for the slots only.
   */
  outboxBytes: number;
  /** Default pipelining chunk in bytes (default = slotBytes; env RINGTREE_CHUNK_BYTES). */
  chunkBytes: number;
  /**
   * Whether the CPU engine backs large host arrays (4 MiB and more) with transparent huge pages before
   * an op (default true; env RINGTREE_HUGE_PAGES=0 turns it off): false where it is off or the kernel's
   * transparent_hugepage setting is "never". See {@link InitOptions.hugePages}.
   */
  hugePages: boolean;
  /** Default per-op deadline in ms (default 300 000; env RINGTREE_TIMEOUT_MS). */
  timeoutMs: number;
}

/** What ran for one kind of operation, since the communicator was made or {@link Communicator.resetStats}. */
export interface OpKindStats {
  /** Operations that settled (collectives: that the engine ran). */
  count: number;
  /** Of those, how many failed. */
  failed: number;
  /** How many ran with each algorithm (collectives). */
  algorithms: { ring: number; tree: number };
  /** Bytes this rank sent to each rank (index = peer rank). */
  bytesSent: number[];
  /** Bytes this rank received from each rank. */
  bytesReceived: number[];
  /** Messages (pipeline chunks) sent and received, all peers together. */
  messagesSent: number;
  messagesReceived: number;
  /** Time the engine spent running them, ms (collectives; 0 for send/recv). */
  timeMs: number;
  /**
   * Of the Promise-returning collectives, how many ran on the calling JS
   * thread instead of the engine's: small ones (at most 256 KiB) whose peers
   * were all already running them, and 2-rank allreduces of one message.
   * They skip the two thread hand-offs (to the engine's thread and back).
   */
  ranInline: number;
}

/** {@link Communicator.stats} result: one entry per op kind. */
export type CommStats = Record<CollectiveName | 'send' | 'recv', OpKindStats>;

/** Internal construction parameters (from init()). @internal */
export interface CommunicatorParts {
  native: NativeCommunicator | null;
  rank: number;
  size: number;
  tuning: EngineTuning;
  jobId: string;
  onDestroy?: () => Promise<void> | void;
  /** The job's store, under this communicator's prefix (absent at world size 1). */
  store?: Store;
  /** Makes a native engine for a sub-communicator (split). */
  createNative: (rank: number, size: number, shmName: string, create: boolean, localRanks?: number[]) => NativeCommunicator;
  /** Per rank of this communicator: equal keys share a host (shared memory), others talk TCP. */
  hostKeys?: string[];
  /** The job's token for TCP peer connections. */
  token?: string;
  /** Address this rank listens on for TCP peers. */
  meshHost?: string;
  /** Deadline of each set-up step (ms). */
  initTimeoutMs: number;
  /** The ranks (in the communicator init() made) of this communicator's members, in new-rank order. */
  parentRanks?: number[];
  /** Per rank of the communicator init() made: whether it can load NCCL (exchanged at init). */
  ncclCapable?: boolean[];
  /** CUDA device for the NCCL side (default LOCAL_RANK modulo the GPU count). */
  device?: number;
  /** NCCL allReduce algorithm, fixed when the NCCL side is made (init/split option). */
  ncclAlgorithm?: NcclAlgorithm;
  /** The NCCL side, already made by ncclCommSplit of the parent's. */
  ncclPremade?: { comm: NativeNcclComm; device: number };
}

/** Options of {@link Communicator.split}. */
export interface SplitOptions extends OpOptions {
  /** The child's NCCL allReduce algorithm (default: the parent's); see `InitOptions.ncclAlgorithm`. */
  ncclAlgorithm?: NcclAlgorithm;
}

type Settle = { resolve: () => void; reject: (e: unknown) => void };

interface ViewRange {
  buffer: ArrayBufferLike;
  start: number;
  end: number;
}

function range(v: ArrayBufferView): ViewRange {
  return { buffer: v.buffer, start: v.byteOffset, end: v.byteOffset + v.byteLength };
}

function overlaps(a: ViewRange, b: ViewRange): boolean {
  return a.buffer === b.buffer && a.start < b.end && b.start < a.end;
}

function className(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'object';
}

/**
 * A group of ranks that run collectives together. Made by {@link init}.
 *
 * Async calls reject, they never throw. An error other than
 * {@link InvalidArgumentError} poisons the communicator: later calls reject at
 * once with the same error class. A Promise settles only when the engine will
 * never touch its buffers again.
 */
export class Communicator {
  /** This process's rank, 0..size-1. */
  readonly rank: number;
  /** Number of ranks. */
  readonly size: number;
  /** Engine tuning in force. */
  readonly tuning: Readonly<EngineTuning>;
  /** @internal */
  readonly jobId: string;
  private native: NativeCommunicator | null;
  private poison: RingtreeError | undefined;
  private destroyed = false;
  private pendingCount = 0;
  private readonly recorder = new FlightRecorder(2000);
  /** [start, end] of the last synchronous op, written by the engine (CLOCK_MONOTONIC ms). */
  private readonly syncClock = new Float64Array(2);
  /** Date.now() - CLOCK_MONOTONIC ms: turns syncClock into epoch ms. */
  private readonly epochOffsetMs: number;
  private collSeq = 0;
  private flushQueued = false;
  private readonly flushStaged = (): void => {
    this.flushQueued = false;
    if (!this.destroyed) this.native?.flush();
  };
  private readonly onDestroy: (() => Promise<void> | void) | undefined;
  private readonly parts: CommunicatorParts;
  private splitCount = 0;

  /** @internal Use {@link init}. */
  constructor(parts: CommunicatorParts) {
    this.parts = parts;
    this.native = parts.native;
    this.rank = parts.rank;
    this.size = parts.size;
    // The outboxes are as the host's segment has them: none where /dev/shm had no room.
    const outboxBytes = parts.native?.outboxBytes?.() ?? parts.tuning.outboxBytes;
    // Huge pages as the kernel allows them: off where transparent_hugepage is "never".
    const hugePages = parts.native?.hugePages?.() ?? parts.tuning.hugePages;
    this.tuning = Object.freeze({ ...parts.tuning, outboxBytes, hugePages });
    this.jobId = parts.jobId;
    this.onDestroy = parts.onDestroy;
    this.epochOffsetMs = Date.now() - Number(process.hrtime.bigint()) / 1e6;
    this.native?.setSyncClock(this.syncClock);
  }

  /** The (collective, algorithm) pairs this communicator runs. */
  algorithms(): Readonly<Record<CollectiveName, readonly string[]>> {
    return CPU_ALGORITHMS;
  }

  /**
   * Reduce `x` across all ranks; every rank gets the result (in `out`, or in `x` when `out` is absent).
   * @throws {InvalidArgumentError} (rejection) for a bad array, op, algorithm or overlap.
   */
  allReduce(x: HostArray | DeviceArray, options: AllReduceOptions = {}): Promise<void> {
    if (isDeviceArray(x) || isDeviceArray(options.out)) {
      return this.device('allReduce', [x, options.out ?? x], options, (t, out) =>
        [{ kind: 'allReduce', send: t, recv: out, count: t.length, dtype: t.dtype, op: options.op, root: 0, sendBytes: t.byteLength, recvBytes: t.byteLength }]);
    }
    return this.async('allReduce', () => this.allReduceDesc(x, options), options.signal);
  }

  /** Synchronous {@link allReduce} for latency-bound loops: drains queued async work first, then blocks this thread (up to `timeoutMs`). @throws the same errors the async form rejects with. */
  allReduceSync(x: HostArray, options: AllReduceOptions = NO_OPTIONS): void {
    this.sync('allReduce', x, null, options, Communicator.allReduceBuilder);
  }

  // The synchronous forms' descriptor builders: static, so that a call
  // allocates no closure (sync() runs one only when its memo misses).
  private static readonly allReduceBuilder: SyncBuilder = (c, x, _y, o) => c.allReduceDesc(x!, o);
  private static readonly reduceScatterBuilder: SyncBuilder = (c, x, y, o) => c.reduceScatterDesc(x!, y!, o);
  private static readonly allGatherBuilder: SyncBuilder = (c, x, y, o) => c.allGatherDesc(x!, y!, o);
  private static readonly broadcastBuilder: SyncBuilder = (c, x, _y, o) => c.broadcastDesc(x!, o);
  private static readonly reduceBuilder: SyncBuilder = (c, x, _y, o) => c.reduceDesc(x!, o);
  private static readonly barrierBuilder: SyncBuilder = (c, _x, _y, o) => c.collective('barrier', o, 'float32', 0, {});

  private allReduceDesc(x: HostArray, options: AllReduceOptions): NativeOpDescriptor & { input: HostArray; output: HostArray } {
    const dtype = dtypeOf(x, options.dtype, 'x');
    const out = (options.out ?? x) as HostArray;
    this.checkSameKind(out, 'out', x, dtype, options.dtype);
    if (out.length !== x.length) {
      throw new InvalidArgumentError(`\`out\` has ${out.length} elements but \`x\` has ${x.length}`, this.where('allReduce'));
    }
    this.checkAlias('allReduce', x, out, 0);
    return this.collectiveDesc('allReduce', options, dtype, x.length, { input: x, output: out, op: options.op });
  }

  /**
   * Reduce `x` (size × count elements) across ranks and scatter: rank r gets block r in `y` (count elements).
   * In place when `y` is exactly `x.subarray(rank * count, (rank + 1) * count)`.
   */
  reduceScatter(x: HostArray | DeviceArray, y: HostArray | DeviceArray, options: ReduceScatterOptions = {}): Promise<void> {
    if (isDeviceArray(x) || isDeviceArray(y)) {
      return this.device('reduceScatter', [x, y], options, (a, b) => {
        if (a.length !== b.length * this.size) throw new InvalidArgumentError(`\`x\` must hold size × y.length = ${this.size * b.length} elements, got ${a.length}`);
        return [{ kind: 'reduceScatter', send: a, recv: b, count: b.length, dtype: a.dtype, op: options.op, root: 0, sendBytes: a.byteLength, recvBytes: b.byteLength }];
      }, true);
    }
    return this.async('reduceScatter', () => this.reduceScatterDesc(x, y, options), options.signal);
  }

  /** Synchronous {@link reduceScatter}. */
  reduceScatterSync(x: HostArray, y: HostArray, options: ReduceScatterOptions = NO_OPTIONS): void {
    this.sync('reduceScatter', x, y, options, Communicator.reduceScatterBuilder);
  }

  /**
   * Gather every rank's `x` (count elements) into `y` (size × count), rank order.
   * In place when `x` is exactly `y.subarray(rank * count, (rank + 1) * count)`.
   */
  allGather(x: HostArray | DeviceArray, y: HostArray | DeviceArray, options: CollectiveOptions = {}): Promise<void> {
    if (isDeviceArray(x) || isDeviceArray(y)) {
      return this.device('allGather', [x, y], options, (a, b) => {
        if (b.length !== a.length * this.size) throw new InvalidArgumentError(`\`y\` must hold size × x.length = ${this.size * a.length} elements, got ${b.length}`);
        return [{ kind: 'allGather', send: a, recv: b, count: a.length, dtype: a.dtype, root: 0, sendBytes: a.byteLength, recvBytes: b.byteLength }];
      }, true);
    }
    return this.async('allGather', () => this.allGatherDesc(x, y, options), options.signal);
  }

  /** Synchronous {@link allGather}. */
  allGatherSync(x: HostArray, y: HostArray, options: CollectiveOptions = NO_OPTIONS): void {
    this.sync('allGather', x, y, options, Communicator.allGatherBuilder);
  }

  /** Copy the root's `x` to every rank (into `out` when given, else into `x`). */
  broadcast(x: HostArray | DeviceArray, options: BroadcastOptions = {}): Promise<void> {
    if (isDeviceArray(x) || isDeviceArray(options.out)) {
      return this.device('broadcast', [x, options.out ?? x], options, (t, out) => {
        const root = options.root ?? 0;
        this.checkRank(root, 'root', 'broadcast');
        return [{ kind: 'broadcast', send: t, recv: out, count: t.length, dtype: t.dtype, root, sendBytes: t.byteLength, recvBytes: t.byteLength }];
      });
    }
    return this.async('broadcast', () => this.broadcastDesc(x, options), options.signal);
  }

  /** Synchronous {@link broadcast}. */
  broadcastSync(x: HostArray, options: BroadcastOptions = NO_OPTIONS): void {
    this.sync('broadcast', x, null, options, Communicator.broadcastBuilder);
  }

  /** Reduce every rank's `x` onto the root (into `out` when given, else into `x` on the root only). */
  reduce(x: HostArray | DeviceArray, options: ReduceOptions = {}): Promise<void> {
    if (isDeviceArray(x) || isDeviceArray(options.out)) {
      return this.device('reduce', [x, options.out ?? x], options, (t, out) => {
        const root = options.root ?? 0;
        this.checkRank(root, 'root', 'reduce');
        return [{ kind: 'reduce', send: t, recv: out, count: t.length, dtype: t.dtype, op: options.op, root, sendBytes: t.byteLength, recvBytes: t.byteLength }];
      });
    }
    return this.async('reduce', () => this.reduceDesc(x, options), options.signal);
  }

  /** Synchronous {@link reduce}. */
  reduceSync(x: HostArray, options: ReduceOptions = NO_OPTIONS): void {
    this.sync('reduce', x, null, options, Communicator.reduceBuilder);
  }

  /**
   * init()'s closing barrier: seq 0 in the engine, not counted or recorded, so
   * users' collectives are numbered from 1 on every rank.
   * @internal
   */
  initBarrier(timeoutMs: number): Promise<void> {
    return this.run('init', (settle) => {
      const desc: NativeOpDescriptor = { kind: 'barrier', dtype: 0, op: 0, count: 0, root: -1, peer: -1, tag: 0,
        algorithm: 0, chunkBytes: 0, timeoutMs };
      this.native!.submit(desc, null, null, (failure) => {
        if (failure) settle.reject(this.fromNative(failure, 'init', 0, timeoutMs));
        else settle.resolve();
      });
    });
  }

  /** Resolve once every rank has entered the barrier. */
  barrier(options: OpOptions = {}): Promise<void> {
    // After this rank's pending device work (DESIGN: barrier runs on the CPU engine).
    if (this.nccl && this.nccl.pendingCount > 0) return this.nccl.drain().then(() => this.barrier(options));
    return this.async('barrier', () => this.collective('barrier', options, 'float32', 0, {}), options.signal);
  }

  /** Synchronous {@link barrier}. */
  barrierSync(options: OpOptions = NO_OPTIONS): void {
    this.sync('barrier', null, null, options, Communicator.barrierBuilder);
  }

  /**
   * Send `x` to rank `peer`. Resolves when `x` may be reused (the bytes left it),
   * which may be before the peer received them: a peer on this host buffers up
   * to `RINGTREE_P2P_BUFFER_BYTES` (default 256 MiB) of messages it has no
   * recv for yet; past that the send resolves once the peer's recv is posted.
   * Sends and receives never deadlock each other or collectives.
   * @throws {TimeoutError} (rejection) the bytes could not leave within `timeoutMs`
   *   (the peer posted no matching recv and had no room to buffer them).
   */
  send(x: HostArray | DeviceArray, peer: number, options: P2pOptions = {}): Promise<void> {
    return this.group([{ send: x, to: peer, tag: options.tag, dtype: options.dtype }], options);
  }

  /**
   * Receive into `x` from rank `peer`; the message must be exactly `x.byteLength`
   * bytes. A DeviceArray receives through NCCL (the peer must send a DeviceArray).
   */
  recv(x: HostArray | DeviceArray, peer: number, options: P2pOptions = {}): Promise<void> {
    return this.group([{ recv: x, from: peer, tag: options.tag, dtype: options.dtype }], options);
  }

  /** Post a send and a receive together (e.g. a ring shift); resolves when both completed. */
  sendRecv(sendSpec: { send: HostArray | DeviceArray; to: number; tag?: number; dtype?: DType },
    recvSpec: { recv: HostArray | DeviceArray; from: number; tag?: number; dtype?: DType }, options: OpOptions = {}): Promise<void> {
    return this.group([sendSpec, recvSpec], options);
  }

  /**
   * Post several sends and receives at once; resolves when all completed,
   * rejects with the first failure. DeviceArrays run as one NCCL group
   * (ncclGroupStart/End), ordered with the other device ops.
   */
  group(ops: P2pSpec[], options: OpOptions = {}): Promise<void> {
    if (Array.isArray(ops) && ops.some((spec) => typeof spec === 'object' && spec !== null &&
      isDeviceArray('send' in spec ? spec.send : (spec as { recv?: unknown }).recv))) {
      return this.deviceGroup(ops, options);
    }
    return this.run('group', (settle) => {
      if (!Array.isArray(ops) || ops.length === 0) {
        throw new InvalidArgumentError('`ops` must be a non-empty array of { send, to } / { recv, from }', this.where('group'));
      }
      const timeoutMs = this.timeout(options.timeoutMs, 'group');
      const descs: NativeOpDescriptor[] = [];
      const bufs: HostArray[] = [];
      ops.forEach((spec, i) => {
        const isSend = 'send' in spec;
        const buf = (isSend ? spec.send : (spec as { recv: HostArray }).recv) as HostArray;
        const peer = isSend ? spec.to : (spec as { from: number }).from;
        const arg = `ops[${i}].${isSend ? 'send' : 'recv'}`;
        const dtype = dtypeOf(buf, spec.dtype, arg);
        this.checkRank(peer, `ops[${i}].${isSend ? 'to' : 'from'}`, 'group');
        const tag = spec.tag ?? 0;
        if (!Number.isInteger(tag) || tag < -(2 ** 31) || tag >= 2 ** 31) {
          throw new InvalidArgumentError(`ops[${i}].tag must be a 32-bit integer, got ${String(tag)}`, this.where('group'));
        }
        descs.push({ kind: isSend ? 'send' : 'recv', dtype: DTYPE_CODES[dtype], op: 0, count: buf.length, root: -1,
          peer, tag, algorithm: 0, chunkBytes: 0, timeoutMs });
        bufs.push(buf);
      });
      // A receive buffer must not overlap any other buffer of the group.
      for (let i = 0; i < bufs.length; i++) {
        for (let j = 0; j < bufs.length; j++) {
          if (i !== j && descs[i].kind === 'recv' && overlaps(range(bufs[i]), range(bufs[j]))) {
            throw new InvalidArgumentError(`ops[${i}].recv overlaps ops[${j}]'s buffer`, this.where('group'));
          }
        }
      }
      this.watchSignal(options.signal, 'group');
      const native = this.native!;
      let remaining = descs.length;
      let firstError: unknown;
      const records = descs.map((d) => this.recorder.start(d.kind, -1, { peer: d.peer, tag: d.tag, bytes: bufs[descs.indexOf(d)].byteLength }));
      const callbacks = descs.map((d, i) => (failure: NativeFailureRecord | null) => {
        this.recorder.finish(records[i], failure);
        if (failure && firstError === undefined) firstError = this.fromNative(failure, d.kind, undefined, timeoutMs);
        if (--remaining === 0) {
          if (firstError !== undefined) settle.reject(firstError);
          else settle.resolve();
        }
      });
      native.submitGroup(descs, bufs, callbacks);
    });
  }

  /**
   * Split into sub-communicators, one per `color` (MPI_Comm_split / ncclCommSplit).
   * Collective: every rank must call it, in the same order relative to other
   * collectives. Ranks with the same color form a group ranked by (`key`,
   * current rank); each group gets its own shared memory, sequence numbers and
   * store prefix, so groups run collectives independently and at once.
   *
   * @param color group id, an integer >= 0; -1 (no color) takes part but gets null.
   * @param key ordering within the group (default: this rank).
   * @returns the new communicator, or null for color -1.
   * @throws {InvalidArgumentError} (rejection) for a non-integer color/key or color < -1.
   */
  split(color: number, key: number = this.rank, options: SplitOptions = {}): Promise<Communicator | null> {
    const checked = (async () => {
      if (options.ncclAlgorithm !== undefined && !NCCL_ALGORITHMS.includes(options.ncclAlgorithm)) {
        throw new InvalidArgumentError(`\`ncclAlgorithm\` must be one of ${NCCL_ALGORITHMS.map((a) => `'${a}'`).join(', ')}, got ${String(options.ncclAlgorithm)}`, this.where('split'));
      }
      if (!Number.isInteger(color) || color < -1 || color >= 2 ** 31) {
        throw new InvalidArgumentError(`\`color\` must be an integer >= -1 (-1: no group), got ${String(color)}`, this.where('split'));
      }
      if (!Number.isInteger(key) || key < -(2 ** 31) || key >= 2 ** 31) {
        throw new InvalidArgumentError(`\`key\` must be a 32-bit integer, got ${String(key)}`, this.where('split'));
      }
      const timeoutMs = this.timeout(options.timeoutMs, 'split');
      const all = new Int32Array(3 * this.size);
      await this.allGather(new Int32Array([color, key, this.rank]), all, { timeoutMs });
      const index = ++this.splitCount;
      // A parent whose NCCL side is in use splits it with ncclCommSplit (every
      // rank, color -1 too); otherwise the child makes its own lazily.
      const ncclAlgorithm = options.ncclAlgorithm ?? this.parts.ncclAlgorithm;
      const ncclPremade = this.nccl?.used ? await this.nccl.splitChild(color, key, ncclAlgorithm, timeoutMs) : null;
      if (color === -1) return null;
      const members: Array<{ key: number; rank: number }> = [];
      for (let r = 0; r < this.size; r++) {
        if (all[3 * r] === color) members.push({ key: all[3 * r + 1]!, rank: all[3 * r + 2]! });
      }
      members.sort((a, b) => a.key - b.key || a.rank - b.rank);
      const newRank = members.findIndex((m) => m.rank === this.rank);
      const newSize = members.length;
      const parentRanks = members.map((m) => this.parts.parentRanks?.[m.rank] ?? m.rank);
      const store = this.parts.store?.prefix(`split${index}/${color}`);
      const hostKeys = members.map((m) => this.parts.hostKeys?.[m.rank] ?? 'local');
      let native: NativeCommunicator;
      if (newSize === 1 || !store) {
        native = this.parts.createNative(0, 1, `/ringtree-${this.jobId}-${randomBytes(6).toString('hex')}`, true);
        native.unlink();
        native.start();
      } else {
        native = await assemble({
          rank: newRank, size: newSize, hostKeys, store, createNative: this.parts.createNative, jobId: this.jobId,
          token: this.parts.token, host: this.parts.meshHost ?? '127.0.0.1', timeoutMs: this.parts.initTimeoutMs,
        });
      }
      const child = new Communicator({
        ...this.parts, native, rank: newRank, size: newSize, onDestroy: undefined, store, parentRanks, hostKeys,
        ncclAlgorithm, ncclPremade: ncclPremade ?? undefined,
      });
      try {
        await child.initBarrier(this.parts.initTimeoutMs);
      } catch (e) {
        await child.destroy();
        throw e;
      }
      return child;
    })();
    return checked.catch((e: unknown) => { throw this.decorate(e, 'split'); });
  }

  /** This communicator's members as ranks of the communicator it was split from (identity for init()'s). */
  parentRanks(): number[] {
    return this.parts.parentRanks ?? Array.from({ length: this.size }, (_, i) => i);
  }

  /**
   * Abort: pending and later operations reject with {@link AbortedError} on
   * this rank and on every peer. Returns promptly. Idempotent.
   */
  abort(reason = ''): void {
    if (this.destroyed || !this.native) return;
    this.native.abort(String(reason));
    this.nccl?.abort(5, `rank ${this.rank} aborted the communicator${reason ? `: ${reason}` : ''}`);
    this.poison ??= new AbortedError(`rank ${this.rank} aborted the communicator${reason ? `: ${reason}` : ''}`, { op: 'abort', rank: this.rank });
  }

  /**
   * Local, graceful teardown: stops the engine threads and unmaps shared
   * memory. Pending operations reject with AbortedError. Idempotent.
   */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.nccl?.destroy();
    this.native?.destroy();
    this.native = null;
    await this.onDestroy?.();
  }

  /** `await using comm = await init()` support. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.destroy();
  }

  /**
   * What actually ran, per op kind: counts, the algorithm used, bytes sent to
   * and received from each peer, pipeline chunks, engine time. Counts include
   * init()'s own closing barrier.
   */
  stats(): CommStats {
    const out = {} as CommStats;
    for (const st of this.native?.stats() ?? []) {
      out[st.kind as keyof CommStats] = {
        count: st.count, failed: st.failed, algorithms: { ring: st.ring, tree: st.tree },
        bytesSent: st.bytesSent, bytesReceived: st.bytesReceived,
        messagesSent: st.messagesSent, messagesReceived: st.messagesReceived, timeMs: st.timeMs,
        ranInline: st.ranInline ?? 0,
      };
    }
    return out;
  }

  /** Zero the counters that {@link stats} reports. */
  resetStats(): void {
    this.native?.resetStats();
  }

  /** Recent operations (newest last), as the flight recorder holds them. */
  recentOps(): ReturnType<FlightRecorder['snapshot']> {
    return this.recorder.snapshot();
  }

  /**
   * Make the NCCL side now (collective: every rank must call it); device
   * arrays otherwise make it on first use. Used by `init({ backend: 'nccl' })`.
   * @throws {BackendUnavailableError} no GPU, driver or NCCL here or on a peer.
   * @internal
   */
  async ensureNccl(): Promise<void> {
    this.checkNcclPeers('init');
    await this.ncclBackend().ensureWatched();
  }

  // ---- GPU dispatch (device arrays -> NCCL) ----

  private nccl: NcclBackend | null = null;

  private ncclBackend(): NcclBackend {
    this.nccl ??= new NcclBackend({
      rank: this.rank, size: this.size, store: this.parts.store, device: this.parts.device, algorithm: this.parts.ncclAlgorithm,
      premade: this.parts.ncclPremade,
      initTimeoutMs: this.parts.initTimeoutMs, cpu: () => this.native,
      abortAll: (reason) => this.abort(reason),
    });
    return this.nccl;
  }

  /** Ranks exchanged their NCCL capability at init: name a peer without it instead of waiting. */
  private checkNcclPeers(op: string): void {
    const capable = this.parts.ncclCapable;
    if (!capable) return;
    const members = this.parts.parentRanks ?? Array.from({ length: this.size }, (_, i) => i);
    const missing = members.map((g, r) => (capable[g] === false ? r : -1)).filter((r) => r >= 0);
    if (missing.length > 0) {
      throw new BackendUnavailableError(`rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} cannot load NCCL, so device arrays cannot be used on this communicator`,
        { op, rank: this.rank, peer: missing[0], remedy: 'Run `ringtree doctor` on those ranks\' hosts; install the driver and NCCL there, or use host arrays.' });
    }
  }

  /**
   * A collective on device arrays: both arrays must be DeviceArrays of one
   * dtype (mixing kinds is an InvalidArgumentError), in place when equal.
   */
  private device(kind: CollectiveName, arrays: [unknown, unknown], opts: OpOptions,
    build: (x: DeviceArray, y: DeviceArray) => NcclOp['calls'], sizesDiffer = false): Promise<void> {
    return this.run(kind, (settle) => {
      const [x, y] = arrays;
      if (!isDeviceArray(x) || !isDeviceArray(y)) {
        throw new InvalidArgumentError(`${kind} mixes a DeviceArray with a ${className(isDeviceArray(x) ? y : x)}: give device arrays for both or host arrays for both`, this.where(kind));
      }
      if (x.dtype !== y.dtype) throw new InvalidArgumentError(`the output is ${y.dtype} but the input is ${x.dtype}`, this.where(kind));
      if (!sizesDiffer && x.length !== y.length) throw new InvalidArgumentError(`the output has ${y.length} elements but the input has ${x.length}`, this.where(kind));
      x.checkLive(kind);
      y.checkLive(kind);
      this.checkNcclPeers(kind);
      const calls = build(x, y);
      const t = this.timeout(opts.timeoutMs, kind);
      this.watchSignal(opts.signal, kind);
      const backend = this.ncclBackend();
      const rec = this.recorder.start(kind, backend.seq + 1, { count: x.length, dtype: DTYPE_CODES[x.dtype], backend: 'nccl' });
      backend.run({ name: kind, calls, timeoutMs: t }, x === y ? [x] : [x, y], (e) => {
        if (!(e instanceof InvalidArgumentError)) this.poison ??= e;
        return e;
      }).then(() => { this.recorder.finish(rec, null); settle.resolve(); },
        (e: RingtreeError) => { this.recorder.finish(rec, { message: e.message }); settle.reject(e); });
    });
  }

  /**
   * Benchmark hook (scripts/gpu-check.mjs): `iterations` allReduces of `x`
   * into `out` issued back to back on the NCCL stream between two CUDA
   * events. Resolves with the GPU milliseconds of all of them.
   * @internal
   */
  timedDeviceAllReduce(x: DeviceArray, out: DeviceArray, iterations: number, options: AllReduceOptions = {}): Promise<number> {
    let ms = 0;
    return this.run('allReduce', (settle) => {
      if (!isDeviceArray(x) || !isDeviceArray(out) || x.dtype !== out.dtype || x.length !== out.length) {
        throw new InvalidArgumentError('timedDeviceAllReduce takes two DeviceArrays of one dtype and length', this.where('allReduce'));
      }
      if (!Number.isInteger(iterations) || iterations < 1) {
        throw new InvalidArgumentError(`\`iterations\` must be an integer >= 1, got ${String(iterations)}`, this.where('allReduce'));
      }
      this.checkNcclPeers('allReduce');
      const t = this.timeout(options.timeoutMs, 'allReduce');
      const calls: NcclOp['calls'] = [{ kind: 'allReduce', send: x, recv: out, count: x.length, dtype: x.dtype, op: options.op, root: 0, sendBytes: x.byteLength, recvBytes: x.byteLength }];
      this.ncclBackend().run({ name: 'allReduce', calls, timeoutMs: t, iterations }, x === out ? [x] : [x, out], (e) => {
        if (!(e instanceof InvalidArgumentError)) this.poison ??= e;
        return e;
      }).then((v) => { ms = v; settle.resolve(); }, (e: unknown) => settle.reject(e));
    }).then(() => ms);
  }

  /**
   * send/recv/sendRecv/group on DeviceArrays: one NCCL group. Validated like
   * the host path (ranks, overlapping receive buffers), plus: every entry is
   * a DeviceArray, no tags, `dtype` (if given) equals the array's.
   */
  private deviceGroup(ops: P2pSpec[], options: OpOptions): Promise<void> {
    const name = ops.length === 1 ? ('send' in ops[0]! ? 'send' : 'recv') : 'group';
    return this.run(name, (settle) => {
      const calls: NcclOp['calls'] = [];
      const arrays: DeviceArray[] = [];
      const ranges: Array<{ arr: DeviceArray; recv: boolean }> = [];
      ops.forEach((spec, i) => {
        const isSend = 'send' in spec;
        const arr = isSend ? spec.send : (spec as { recv: unknown }).recv;
        const arg = `ops[${i}].${isSend ? 'send' : 'recv'}`;
        if (!isDeviceArray(arr)) {
          throw new InvalidArgumentError(`${arg} is a ${className(arr)} but other entries are DeviceArrays: give device arrays for all or host arrays for all`, this.where(name));
        }
        const peer = isSend ? spec.to : (spec as { from: number }).from;
        this.checkRank(peer, `ops[${i}].${isSend ? 'to' : 'from'}`, name);
        if (spec.tag !== undefined && spec.tag !== 0) {
          throw new InvalidArgumentError(`${arg}: device send/recv have no tags (NCCL matches messages in order per peer), got tag ${String(spec.tag)}`, this.where(name));
        }
        if (spec.dtype !== undefined && spec.dtype !== arr.dtype) {
          throw new InvalidArgumentError(`${arg} is a ${arr.dtype} DeviceArray but \`dtype\` says ${String(spec.dtype)}`, this.where(name));
        }
        arr.checkLive(name);
        calls.push(isSend
          ? { kind: 'send', send: arr, recv: null, count: arr.length, dtype: arr.dtype, root: peer, sendBytes: arr.byteLength, recvBytes: 0 }
          : { kind: 'recv', send: null, recv: arr, count: arr.length, dtype: arr.dtype, root: peer, sendBytes: 0, recvBytes: arr.byteLength });
        ranges.push({ arr, recv: !isSend });
        if (!arrays.includes(arr)) arrays.push(arr);
      });
      // A receive buffer must not overlap any other buffer of the group.
      for (let i = 0; i < ranges.length; i++) {
        for (let j = 0; j < ranges.length; j++) {
          const a = ranges[i]!.arr;
          const b = ranges[j]!.arr;
          if (i !== j && ranges[i]!.recv && a.buffer === b.buffer &&
            a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
            throw new InvalidArgumentError(`ops[${i}].recv overlaps ops[${j}]'s buffer`, this.where(name));
          }
        }
      }
      this.checkNcclPeers(name);
      const t = this.timeout(options.timeoutMs, name);
      this.watchSignal(options.signal, name);
      const backend = this.ncclBackend();
      const rec = this.recorder.start(name, backend.seq + 1, { calls: calls.map((c) => `${c.kind}:${c.root}`), backend: 'nccl' });
      backend.run({ name, calls, timeoutMs: t }, arrays, (e) => {
        if (!(e instanceof InvalidArgumentError)) this.poison ??= e;
        return e;
      }).then(() => { this.recorder.finish(rec, null); settle.resolve(); },
        (e: RingtreeError) => { this.recorder.finish(rec, { message: e.message }); settle.reject(e); });
    });
  }

  // ---- internals ----

  private where(op: string): { op: string; rank: number } {
    return { op, rank: this.rank };
  }

  private checkRank(value: unknown, arg: string, op: string): asserts value is number {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= this.size) {
      throw new InvalidArgumentError(`\`${arg}\` must be an integer rank in [0, ${this.size - 1}], got ${String(value)}`, this.where(op));
    }
  }

  private timeout(t: number | undefined, op: string): number {
    if (t === undefined) return this.tuning.timeoutMs;
    if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0 || t > 2 ** 31) {
      throw new InvalidArgumentError(`\`timeoutMs\` must be a positive number of milliseconds, got ${String(t)}`, this.where(op));
    }
    return Math.ceil(t);
  }

  private checkSameKind(arr: unknown, arg: string, like: HostArray, dtype: DType, declared: DType | undefined): void {
    if (!ArrayBuffer.isView(arr)) {
      throw new InvalidArgumentError(`expected a ${className(like)} for \`${arg}\`, got ${className(arr)}`);
    }
    if (className(arr) !== className(like) && !(Buffer.isBuffer(like) || Buffer.isBuffer(arr))) {
      throw new InvalidArgumentError(`expected a ${className(like)} for \`${arg}\`, got ${className(arr)}`);
    }
    const d = dtypeOf(arr, declared, arg);
    if (d !== dtype) throw new InvalidArgumentError(`\`${arg}\` is ${d} but the input is ${dtype}`);
  }

  /** In place means exactly NCCL's in-place position; any other overlap is rejected. */
  private checkAlias(op: string, input: HostArray, output: HostArray, inPlaceByteOffset: number, inputIsInsideOutput = false): void {
    const a = range(input), b = range(output);
    if (!overlaps(a, b)) return;
    const inPlace = inputIsInsideOutput
      ? a.start === b.start + inPlaceByteOffset && a.end <= b.end
      : b.start === a.start + inPlaceByteOffset && b.end <= a.end;
    if (!inPlace) {
      throw new InvalidArgumentError(
        `the input and output of ${op} overlap without being in place (in place means the output is exactly ` +
        `${op === 'allGather' ? 'the input at y.subarray(rank * count, (rank + 1) * count)' : op === 'reduceScatter' ? 'x.subarray(rank * count, (rank + 1) * count)' : 'the input'})`,
        this.where(op));
    }
  }

  private reduceScatterDesc(x: HostArray, y: HostArray, options: ReduceScatterOptions): NativeOpDescriptor & { input: HostArray; output: HostArray } {
    const dtype = dtypeOf(x, options.dtype, 'x');
    this.checkSameKind(y, 'y', x, dtype, options.dtype);
    if (x.length !== y.length * this.size) {
      throw new InvalidArgumentError(`\`x\` must hold size × y.length = ${this.size} × ${y.length} = ${this.size * y.length} elements, got ${x.length}`, this.where('reduceScatter'));
    }
    this.checkAlias('reduceScatter', x, y, this.rank * y.byteLength);
    return this.collectiveDesc('reduceScatter', options, dtype, y.length, { input: x, output: y, op: options.op });
  }

  private allGatherDesc(x: HostArray, y: HostArray, options: CollectiveOptions): NativeOpDescriptor & { input: HostArray; output: HostArray } {
    const dtype = dtypeOf(x, options.dtype, 'x');
    this.checkSameKind(y, 'y', x, dtype, options.dtype);
    if (y.length !== x.length * this.size) {
      throw new InvalidArgumentError(`\`y\` must hold size × x.length = ${this.size} × ${x.length} = ${this.size * x.length} elements, got ${y.length}`, this.where('allGather'));
    }
    this.checkAlias('allGather', x, y, this.rank * x.byteLength, true);
    return this.collectiveDesc('allGather', options, dtype, x.length, { input: x, output: y });
  }

  private broadcastDesc(x: HostArray, options: BroadcastOptions): NativeOpDescriptor & { input: HostArray; output: HostArray } {
    const root = options.root ?? 0;
    this.checkRank(root, 'root', 'broadcast');
    const dtype = dtypeOf(x, options.dtype, 'x');
    const out = (options.out ?? x) as HostArray;
    this.checkSameKind(out, 'out', x, dtype, options.dtype);
    if (out.length !== x.length) {
      throw new InvalidArgumentError(`\`out\` has ${out.length} elements but \`x\` has ${x.length}`, this.where('broadcast'));
    }
    this.checkAlias('broadcast', x, out, 0);
    return this.collectiveDesc('broadcast', options, dtype, x.length, { input: x, output: out, root });
  }

  private reduceDesc(x: HostArray, options: ReduceOptions): NativeOpDescriptor & { input: HostArray; output: HostArray | null } {
    const root = options.root ?? 0;
    this.checkRank(root, 'root', 'reduce');
    const dtype = dtypeOf(x, options.dtype, 'x');
    let out: HostArray | null = null;
    if (this.rank === root) {
      out = (options.out ?? x) as HostArray;
      this.checkSameKind(out, 'out', x, dtype, options.dtype);
      if (out.length !== x.length) {
        throw new InvalidArgumentError(`\`out\` has ${out.length} elements but \`x\` has ${x.length}`, this.where('reduce'));
      }
      this.checkAlias('reduce', x, out, 0);
    } else if (options.out !== undefined) {
      this.checkSameKind(options.out, 'out', x, dtype, options.dtype);
    }
    return this.collectiveDesc('reduce', options, dtype, x.length, { input: x, output: out, root, op: options.op });
  }

  private collectiveDesc<I extends HostArray | null, O extends HostArray | null>(
    kind: CollectiveName, options: CollectiveOptions & { op?: ReduceOpName }, dtype: DType, count: number,
    extra: { input?: I; output?: O; root?: number; op?: ReduceOpName },
  ): NativeOpDescriptor & { input: I; output: O } {
    const opName = extra.op ?? 'sum';
    if (!isReduceOpName(opName)) {
      throw new InvalidArgumentError(`\`op\` must be one of ${REDUCE_OPS.join(', ')}, got ${String(opName)}`, this.where(kind));
    }
    const algorithm = options.algorithm ?? 'ring';
    const supported = CPU_ALGORITHMS[kind];
    const resolved = algorithm === 'auto' ? autoAlgorithm(kind, count * dtypeSize(dtype), this.size, supported) : algorithm;
    if (!(supported as readonly string[]).includes(resolved)) {
      const table = Object.entries(CPU_ALGORITHMS).map(([k, v]) => `${k}: ${v.join(', ')}`).join('; ');
      throw new InvalidArgumentError(
        `algorithm ${JSON.stringify(algorithm)} is not supported for ${kind} on the CPU engine; supported: ${supported.join(', ')}, auto (all pairs: ${table})`,
        this.where(kind));
    }
    let chunkBytes = 0;
    if (options.chunkBytes !== undefined) {
      if (!Number.isInteger(options.chunkBytes) || options.chunkBytes < 1) {
        throw new InvalidArgumentError(`\`chunkBytes\` must be a positive integer, got ${String(options.chunkBytes)}`, this.where(kind));
      }
      chunkBytes = options.chunkBytes;
    }
    return {
      kind, dtype: DTYPE_CODES[dtype], op: REDUCE_OP_CODES[opName], count, root: extra.root ?? -1, peer: -1, tag: 0,
      algorithm: ALGORITHM_CODES[resolved], chunkBytes, timeoutMs: this.timeout(options.timeoutMs, kind),
      input: (extra.input ?? null) as I, output: (extra.output ?? null) as O,
    };
  }

  private collective(kind: CollectiveName, options: CollectiveOptions, dtype: DType, count: number,
    extra: { input?: HostArray; output?: HostArray | null; root?: number; op?: ReduceOpName }) {
    return this.collectiveDesc(kind, options, dtype, count, extra);
  }

  private checkUsable(op: string): void {
    if (this.destroyed || !this.native) throw new AbortedError('the communicator was destroyed', { ...this.where(op), remedy: 'Create a new communicator with init().' });
    if (this.poison) throw this.repoison(op);
    const failure = this.native.failure();
    if (failure) {
      this.poison = this.fromNative(failure, op);
      throw this.repoison(op);
    }
  }

  private repoison(op: string): RingtreeError {
    const p = this.poison!;
    const Ctor = p.constructor as new (m: string, d: object) => RingtreeError;
    const reason = p.message.split('\nRemedy:')[0].replace(/ \[op [^\]]*\]/g, '');
    return new Ctor(`the communicator failed earlier and cannot be used: ${reason}`,
      { op, rank: this.rank, remedy: p.remedy ?? 'Create a new communicator with init().', peer: p.peer, cause: p });
  }

  private fromNative(failure: NativeFailureRecord, op: string, seq?: number, timeoutMs?: number): RingtreeError {
    const err = errorFromNative(failure, { op, rank: this.rank, seq, timeoutMs: failure.code === 4 ? timeoutMs : undefined });
    if (failure.code !== 1) {
      this.poison ??= err;
      if (failure.code === 2 || failure.code === 4 || failure.code === 3) this.dumpFlightRecorder(err);
    }
    return err;
  }

  private dumpFlightRecorder(err: RingtreeError): void {
    try {
      const dir = process.env.RINGTREE_FLIGHT_RECORDER_DIR ?? os.tmpdir();
      mkdirSync(dir, { recursive: true });
      const file = path.join(dir, `ringtree-flight-${this.jobId}-rank${this.rank}.json`);
      writeFileSync(file, JSON.stringify({
        rank: this.rank, size: this.size, pid: process.pid, error: { name: err.name, code: err.code, message: err.message },
        peers: this.native?.peerStates() ?? [], ops: this.recorder.snapshot(),
      }, null, 2));
      (err as { flightRecorder?: string }).flightRecorder = file;
    } catch {
      // A failed dump must not hide the error it documents.
    }
  }

  private watchSignal(signal: AbortSignal | undefined, op: string): void {
    if (!signal) return;
    if (!(signal instanceof AbortSignal)) throw new InvalidArgumentError('`signal` must be an AbortSignal', this.where(op));
    if (signal.aborted) {
      throw new AbortedError(`${op} was not started: its AbortSignal had already fired`, { ...this.where(op), cause: signal.reason });
    }
    const onAbort = () => this.abort(`AbortSignal fired during ${op}`);
    signal.addEventListener('abort', onAbort, { once: true });
    this.afterSettle.push(() => signal.removeEventListener('abort', onAbort));
  }

  private afterSettle: Array<() => void> = [];

  private run(op: string, start: (settle: Settle) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      try {
        this.checkUsable(op);
        this.afterSettle = [];
        const cleanups = this.afterSettle;
        this.pendingCount++;
        const done = () => {
          this.pendingCount--;
          for (const c of cleanups) c();
        };
        try {
          start({ resolve: () => { done(); resolve(); }, reject: (e) => { done(); reject(e); } });
        } catch (e) {
          done();
          throw e;
        }
      } catch (e) {
        reject(this.decorate(e, op));
      }
    });
  }

  private decorate(e: unknown, op: string): unknown {
    if (e instanceof InvalidArgumentError && e.op === undefined) {
      return new InvalidArgumentError(e.message.split(' [')[0], { op, rank: this.rank });
    }
    return e;
  }

  private async(kind: CollectiveName, build: () => NativeOpDescriptor & { input?: HostArray | null; output?: HostArray | null }, signal?: AbortSignal): Promise<void> {
    return this.run(kind, (settle) => {
      const desc = build();
      const options = desc;
      this.watchSignal(signal, kind);
      const seq = ++this.collSeq;
      const rec = this.recorder.start(desc.kind, seq, { count: desc.count, dtype: desc.dtype, op: desc.op, root: desc.root });
      // Numbers and views only (submitArgs): a descriptor object would cost
      // the native side a property lookup per field. The callback's closure
      // holds `desc`, and the engine holds references to the views anyway.
      const input = desc.input ?? null, output = desc.output ?? null;
      const inPlace = output !== null && output === input;
      this.native!.submitArgs(nativeCode(kind, desc, inPlace), desc.count, desc.chunkBytes, desc.timeoutMs,
        input, inPlace ? null : output, (failure) => {
          this.recorder.finish(rec, failure);
          if (failure) settle.reject(this.fromNative(failure, kind, seq, options.timeoutMs));
          else settle.resolve();
        }, true);
      // Staged: ops issued in one burst (a loop of calls before the next
      // await) reach the engine together at the end of this task, and small
      // 2-rank allreduces among them travel as one message.
      if (!this.flushQueued) {
        this.flushQueued = true;
        queueMicrotask(this.flushStaged);
      }
    });
  }

  /**
   * The last synchronous call, validated: the next call with the same arrays
   * and the same options object (fields unchanged) reuses its descriptor.
   * Loops repeat one call, and at small sizes checking the arguments and
   * building the descriptor cost as much as the collective.
   */
  private lastSync: SyncMemo | null = null;

  private sync(kind: CollectiveName, a: HostArray | null, b: HostArray | null, options: CollectiveOptions, build: SyncBuilder): void {
    try {
      // checkUsable() without asking the engine: runSyncArgs answers that.
      if (this.destroyed || !this.native) throw new AbortedError('the communicator was destroyed', { ...this.where(kind), remedy: 'Create a new communicator with init().' });
      if (this.poison) throw this.repoison(kind);
      const o = options as SyncOptionFields;
      let m = this.lastSync;
      let failure: NativeFailureRecord | null;
      // The same call as the last one, arrays still as long as they were
      // (a detached or shrunk buffer reads length 0): the engine repeats the
      // op it parsed then (runSyncAgain), without reading the arguments.
      if (m !== null && m.kind === kind && m.a === a && m.b === b && m.o === options && m.la === (a === null ? 0 : a.length) &&
        m.lb === (b === null ? 0 : b.length) && m.op === o.op && m.algorithm === o.algorithm && m.dtype === o.dtype &&
        m.timeoutMs === o.timeoutMs && m.chunkBytes === o.chunkBytes && m.root === o.root && m.out === o.out &&
        m.lo === (o.out == null ? 0 : (o.out as HostArray).length)) {
        ++this.collSeq;
        failure = this.native!.runSyncAgain();
      } else {
        this.lastSync = null;
        const desc = build(this, a, b, options);
        const inPlace = desc.output != null && desc.output === desc.input;
        m = {
          kind, a, b, o: options, la: a === null ? 0 : a.length, lb: b === null ? 0 : b.length, op: o.op, algorithm: o.algorithm,
          dtype: o.dtype, timeoutMs: o.timeoutMs, chunkBytes: o.chunkBytes, root: o.root, out: o.out,
          lo: o.out == null ? 0 : (o.out as HostArray).length,
          code: nativeCode(kind, desc, inPlace),
          count: desc.count, descChunkBytes: desc.chunkBytes, descTimeoutMs: desc.timeoutMs,
          input: desc.input ?? null, output: inPlace ? null : desc.output ?? null,
          details: { count: desc.count, dtype: desc.dtype, op: desc.op, root: desc.root, sync: true },
        };
        ++this.collSeq;
        failure = this.native!.runSyncArgs(m.code, m.count, m.descChunkBytes, m.descTimeoutMs, m.input, m.output);
        // Parsed and checked natively (it throws otherwise): runSyncAgain may repeat it.
        if (!failure?.before) this.lastSync = m;
      }
      const clock = this.syncClock;
      if (failure?.before) {
        this.collSeq--;
        this.poison = this.fromNative(failure, kind);
        throw this.repoison(kind);
      }
      const seq = this.collSeq;
      this.recorder.record(kind, seq, m.details, clock[0]! + this.epochOffsetMs, clock[1]! + this.epochOffsetMs, failure);
      if (failure) throw this.fromNative(failure, `${kind}Sync`, seq, m.descTimeoutMs);
    } catch (e) {
      throw this.decorate(e, `${kind}Sync`);
    }
  }
}

/**
 * The synchronous forms' default options: one object, so that a loop of
 * calls without options hits sync()'s memo (a `= {}` default would be a new
 * object per call).
 */
const NO_OPTIONS: Readonly<Record<string, never>> = Object.freeze({});

/** Builds a synchronous call's descriptor from its arguments (checking them). */
type SyncBuilder = (c: Communicator, a: HostArray | null, b: HostArray | null, options: CollectiveOptions) =>
  NativeOpDescriptor & { input?: HostArray | null; output?: HostArray | null };

/** The option fields a synchronous call's descriptor depends on. */
interface SyncOptionFields { op?: unknown; algorithm?: unknown; dtype?: unknown; timeoutMs?: unknown; chunkBytes?: unknown; root?: unknown; out?: unknown }

interface SyncMemo {
  kind: CollectiveName; a: HostArray | null; b: HostArray | null; o: CollectiveOptions; la: number; lb: number;
  op: unknown; algorithm: unknown; dtype: unknown; timeoutMs: unknown; chunkBytes: unknown; root: unknown; out: unknown; lo: number;
  code: number; count: number; descChunkBytes: number; descTimeoutMs: number;
  input: HostArray | null; output: HostArray | null; details: Record<string, unknown>;
}

/** The `code` argument of runSyncArgs / submitArgs (lib/binding.ts); `inPlace`: the output is the input. */
function nativeCode(kind: CollectiveName, desc: NativeOpDescriptor, inPlace: boolean): number {
  return NATIVE_KIND_CODES[kind] + desc.dtype * 16 + desc.op * 256 + desc.algorithm * 4096 + (desc.root + 1) * 65536 +
    (inPlace ? IN_PLACE_CODE : 0);
}

/** Bit 48 of a native op code: in place (lib/binding.ts). */
const IN_PLACE_CODE = 2 ** 48;

/** native/cpu/Op.h's OpKind codes, for runSyncArgs and submitArgs. */
const NATIVE_KIND_CODES: Record<CollectiveName, number> = {
  allReduce: 1, reduceScatter: 2, allGather: 3, broadcast: 4, reduce: 5, barrier: 6,
};

export { dtypeSize };
