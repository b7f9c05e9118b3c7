/**
 * The NCCL side of a Communicator: made on first use of a device array (or
 * eagerly by `init({ backend: 'nccl' })`), ordered per backend, watched by
 * ringtree's own liveness. Rank 0 makes the unique id and the store spreads
 * it; every rank checks that all loaded the same NCCL version.
 *
 * @internal
 * @module
 */
import type { NativeCommunicator, NativeFailureRecord, NativeNcclCall, NativeNcclComm } from './binding.js';
import type { DeviceArray } from './device.js';
import { requireNccl } from './device.js';
import { DTYPE_CODES, REDUCE_OP_CODES } from './dtype.js';
import type { DType, ReduceOpName } from './dtype.js';
import { BackendUnavailableError, CollectiveMismatchError, errorFromNative } from './errors.js';
import type { RingtreeError } from './errors.js';
import type { Store } from './store.js';

// ncclDataType_t and ncclRedOp_t (native/cuda/NcclApi.h).
const NCCL_DTYPES: Record<DType, number> = { int8: 0, uint8: 1, int32: 2, int64: 4, float16: 6, float32: 7, float64: 8, bfloat16: 9 };
const NCCL_OPS: Record<ReduceOpName, number> = { sum: 0, prod: 1, max: 2, min: 3, avg: 4 };
void DTYPE_CODES; void REDUCE_OP_CODES;

/** NCCL algorithms a communicator can be fixed to (`init`/`split` option `ncclAlgorithm`). */
export const NCCL_ALGORITHMS = ['ring', 'tree', 'auto'] as const;
/** One of {@link NCCL_ALGORITHMS}. */
export type NcclAlgorithm = typeof NCCL_ALGORITHMS[number];

/** First NCCL with per-collective NCCL_ALGO strings (`allreduce:tree`). */
export const NCCL_PER_COLLECTIVE_ALGO_VERSION = 22400;

/**
 * The NCCL_ALGO value for `algorithm` under NCCL `versionCode`: '' lets NCCL
 * choose. 'tree' exists only for allReduce, so before per-collective strings
 * it cannot be set without breaking the other collectives.
 * @throws {BackendUnavailableError} 'tree' with NCCL older than 2.24.
 */
export function ncclAlgoEnv(algorithm: NcclAlgorithm | undefined, versionCode: number, rank?: number): string {
  if (!algorithm || algorithm === 'auto') return '';
  const name = algorithm === 'ring' ? 'ring' : 'tree';
  if (versionCode >= NCCL_PER_COLLECTIVE_ALGO_VERSION) return `allreduce:${name}`;
  if (algorithm === 'ring') return 'Ring';
  throw new BackendUnavailableError(`ncclAlgorithm 'tree' needs NCCL 2.24 or newer (per-collective NCCL_ALGO); this NCCL is version code ${versionCode}`,
    { op: 'nccl', rank, remedy: "Install NCCL 2.24+ (pip install -U nvidia-nccl-cu12) or use ncclAlgorithm 'ring' / 'auto'." });
}

/** How often pending device ops are checked against ringtree's liveness, ms. */
const WATCH_INTERVAL_MS = 200;

export interface NcclBackendParts {
  rank: number;
  size: number;
  /** This communicator's store prefix (absent at world size 1). */
  store?: Store;
  device?: number;
  /** Fixed when the NCCL communicator is made (NCCL_ALGO under a lock, restored after). */
  algorithm?: NcclAlgorithm;
  initTimeoutMs: number;
  /** The CPU engine of the same communicator: liveness and its sequence numbers. */
  cpu: () => NativeCommunicator | null;
  /** Abort the CPU side too (tells peers), with a reason. */
  abortAll: (reason: string) => void;
  /** Already made (by {@link NcclBackend.splitChild} of the parent): used instead of making one. */
  premade?: { comm: NativeNcclComm; device: number };
}

/** One operation for {@link NcclBackend.run}. */
export interface NcclOp {
  name: string;
  calls: Array<Omit<NativeNcclCall, 'send' | 'recv' | 'sendOffset' | 'recvOffset' | 'sendBytes' | 'recvBytes' | 'dtype' | 'op'> & {
    send?: DeviceArray | null; recv?: DeviceArray | null; dtype: DType; op?: ReduceOpName; sendBytes: number; recvBytes: number;
  }>;
  timeoutMs: number;
  /** Timed run: issue the calls this many times back to back between two CUDA events. */
  iterations?: number;
}

export class NcclBackend {
  /** Device-op sequence number (per backend), 1-based. */
  seq = 0;
  private comm: NativeNcclComm | null = null;
  private making: Promise<NativeNcclComm> | null = null;
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private watch: NodeJS.Timeout | null = null;
  private pendingSince = 0;
  // Resolves once the latest op was posted to the NCCL stream (or failed before).
  private issuedTail: Promise<void> = Promise.resolve();
  // When a device op last settled: a backend that keeps completing ops is not stuck behind a mixed-up peer.
  private lastProgress = 0;
  // Consecutive watch ticks that saw a peer in a host collective this rank never called.
  private mixedTicks = 0;
  private destroyed = false;
  // Rejects when abort() runs before the NCCL communicator exists (it may be
  // waiting in the store for a peer that took another code path).
  private rejectMaking: ((e: unknown) => void) | null = null;
  // The first device op that waited for the communicator to be made (named in errors from making it).
  private makingFor: { name: string; seq: number; timeoutMs: number } | null = null;
  // Set by abort(): what the user can do about it (carried into the pending ops' errors).
  private abortRemedy: string | undefined;
  private readonly abortedBeforeMade = new Promise<never>((_, reject) => { this.rejectMaking = reject; });

  constructor(private readonly parts: NcclBackendParts) {}

  /** CUDA device of the NCCL communicator once made. */
  private device = 0;

  /** Make the NCCL communicator (collectively; idempotent). */
  ensure(): Promise<NativeNcclComm> {
    if (!this.comm && this.parts.premade) {
      this.comm = this.parts.premade.comm;
      this.device = this.parts.premade.device;
    }
    if (this.comm) return Promise.resolve(this.comm);
    this.abortedBeforeMade.catch(() => undefined);
    this.making ??= Promise.race([this.make(), this.abortedBeforeMade]);
    return this.making;
  }

  private async make(): Promise<NativeNcclComm> {
    const { rank, size, store } = this.parts;
    const b = requireNccl('nccl');
    const info = b.cudaInfo();
    const version = info.nccl.version ?? 'unknown';
    if (info.devices.length === 0) {
      throw new BackendUnavailableError('the CUDA driver reports no GPU', { op: 'nccl', rank, remedy: 'Check nvidia-smi and CUDA_VISIBLE_DEVICES.' });
    }
    const device = this.parts.device ?? (Number(process.env.LOCAL_RANK ?? 0) % info.devices.length);
    let id: Uint8Array;
    if (size === 1 || !store) {
      id = b.ncclUniqueId();
    } else {
      await store.set(`nccl/version/${rank}`, version);
      if (rank === 0) await store.set('nccl/id', Buffer.from(b.ncclUniqueId()));
      id = await store.get('nccl/id', { timeoutMs: this.parts.initTimeoutMs });
      for (let r = 0; r < size; r++) {
        const v = Buffer.from(await store.get(`nccl/version/${r}`, { timeoutMs: this.parts.initTimeoutMs })).toString('utf8');
        if (v !== version) {
          throw new BackendUnavailableError(`rank ${r} loaded NCCL ${v} but rank ${rank} loaded NCCL ${version}`,
            { op: 'nccl', rank, peer: r, remedy: 'Install the same NCCL on every host (or point RINGTREE_NCCL_PATH at the same version).' });
        }
      }
    }
    const algorithm = ncclAlgoEnv(this.parts.algorithm, info.nccl.versionCode ?? 0, rank);
    this.device = device;
    const comm = new b.NcclComm({ device, rank, size, uniqueId: id, algorithm, initTimeoutMs: this.parts.initTimeoutMs });
    this.comm = comm;
    // The communicator is made on its own thread; an empty op settles once it is ready (or failed).
    await new Promise<void>((resolve, reject) => {
      comm.submit('init', [], this.parts.initTimeoutMs, (f) => (f ? reject(errorFromNative(f, { op: 'nccl init', rank })) : resolve()));
    });
    return comm;
  }

  /**
   * {@link ensure} for `init({ backend: 'nccl' })`: ringtree's liveness
   * watches the peers meanwhile, so a peer that died or aborted (e.g. its own
   * NCCL init failed) rejects this instead of leaving it until the deadline.
   */
  async ensureWatched(): Promise<void> {
    this.usedFlag = true;
    this.pending++;
    this.startWatch();
    try {
      await this.ensure();
    } finally {
      this.pending--;
      this.lastProgress = Date.now();
      if (this.pending === 0) this.stopWatch();
    }
  }

  // Set synchronously by the first device call: every rank makes its calls in
  // the same order, so at a split() all ranks agree on it (the NCCL
  // communicator may still be in the making; splitChild waits for it).
  private usedFlag = false;

  /** True once a device op, `init({ backend: 'nccl' })` or a split used (or premade) the NCCL communicator. */
  get used(): boolean {
    return this.usedFlag || this.parts.premade !== undefined;
  }

  /**
   * ncclCommSplit, ordered after this communicator's device ops (so the parent
   * is idle while NCCL splits it). Collective over every rank of this
   * communicator; `color` -1 (NCCL_SPLIT_NOCOLOR) takes part and gets null.
   * NCCL ranks the members by (`key`, parent rank), as ringtree's split does.
   */
  splitChild(color: number, key: number, algorithm: NcclAlgorithm | undefined, timeoutMs: number): Promise<{ comm: NativeNcclComm; device: number } | null> {
    const before = this.tail;
    this.pending++;
    this.startWatch();
    const p = (async () => {
      await before;
      const parent = await this.ensure();
      const b = requireNccl('split');
      const child = new b.NcclComm!({
        device: this.device, rank: 0, size: 1, uniqueId: new Uint8Array(128), initTimeoutMs: timeoutMs,
        algorithm: ncclAlgoEnv(algorithm, b.cudaInfo().nccl.versionCode ?? 0, this.parts.rank),
        parent, splitColor: color < 0 ? -1 : color, splitKey: key,
      });
      try {
        await new Promise<void>((resolve, reject) => {
          child.submit('split', [], timeoutMs, (f) => (f ? reject(errorFromNative(f, { op: 'split (ncclCommSplit)', rank: this.parts.rank })) : resolve()));
        });
      } catch (e) {
        child.destroy();
        throw e;
      }
      if (color < 0) {
        child.destroy();
        return null;
      }
      return { comm: child, device: this.device };
    })();
    const settled = p.then(() => undefined, () => undefined).finally(() => {
      this.pending--;
      this.lastProgress = Date.now();
      if (this.pending === 0) this.stopWatch();
    });
    this.tail = settled;
    return p;
  }

  /** Operations submitted and not yet settled. */
  get pendingCount(): number {
    return this.pending;
  }

  /**
   * Run one NCCL operation after the earlier ones (per-backend order) and after
   * earlier work on its arrays. Rejects with the typed error. Resolves with
   * the GPU milliseconds of a timed op (`op.iterations`), else 0.
   */
  run(op: NcclOp, arrays: DeviceArray[], onError: (e: RingtreeError) => RingtreeError): Promise<number> {
    this.usedFlag = true;
    const seq = ++this.seq;
    // Per-backend order is submission order: every op of this communicator
    // goes to one CUDA stream, which runs them in the order they were posted,
    // so an op waits only until the previous one was posted (ops issued back
    // to back pipeline on the GPU). An array's earlier op waits the same way
    // when it was this communicator's; any other (a copy, a fill or a GEMM on
    // the device stream, another communicator's op) must have completed.
    const before = this.issuedTail;
    const priors = arrays.map((a) => {
      const last = a.lastIssue;
      return last && last.stream === this && last.settled === a.tail ? last.issued : a.tail;
    });
    let markIssued!: () => void;
    const issued = new Promise<void>((resolve) => { markIssued = resolve; });
    this.issuedTail = issued;
    // From here on dispose() of an array no longer cancels the op: the memory stays until it settled.
    const releases = arrays.map((a) => a.hold(op.name));
    this.pending++;
    this.startWatch();
    const p = (async () => {
      try {
        await before;
        await Promise.allSettled(priors);
        return await this.submit(op, seq, onError, markIssued);
      } finally {
        markIssued();
      }
    })();
    const settled = p.then(() => undefined, () => undefined).finally(() => {
      for (const r of releases) r();
      this.pending--;
      this.lastProgress = Date.now();
      if (this.pending === 0) this.stopWatch();
    });
    this.tail = settled;
    for (const a of arrays) {
      a.tail = settled;
      a.lastIssue = { stream: this, issued, settled };
    }
    return p;
  }

  /** Make the communicator if needed, post `op` to its stream (then `posted()`), settle with its outcome. */
  private async submit(op: NcclOp, seq: number, onError: (e: RingtreeError) => RingtreeError, posted: () => void): Promise<number> {
    this.makingFor ??= { name: op.name, seq, timeoutMs: op.timeoutMs };
    const comm = await this.ensure();
    const calls: NativeNcclCall[] = op.calls.map((c) => ({
      kind: c.kind, root: c.root, count: c.count, dtype: NCCL_DTYPES[c.dtype], op: NCCL_OPS[this.ncclOp(c.op)],
      send: c.send?.buffer ?? null, sendOffset: c.send?.byteOffset ?? 0, sendBytes: c.sendBytes,
      recv: c.recv?.buffer ?? null, recvOffset: c.recv?.byteOffset ?? 0, recvBytes: c.recvBytes,
    }));
    return new Promise<number>((resolve, reject) => {
      const done = (f: NativeFailureRecord | null, ms = 0) => {
        if (!f) return resolve(ms);
        const remedy = f.remedy ?? this.abortRemedy;
        reject(onError(errorFromNative({ ...f, remedy }, { op: op.name, rank: this.parts.rank, seq, timeoutMs: op.timeoutMs })));
      };
      if (op.iterations) comm.submitTimed(op.name, calls, op.iterations, op.timeoutMs, done);
      else comm.submit(op.name, calls, op.timeoutMs, done);
      posted();
    });
  }

  /**
   * The NCCL reduction for `op`. On a one-rank communicator 'avg' is run as
   * 'sum' (the same result: x / 1). Measured on an H200 with NCCL 2.28.9
   * (scripts/gpu-check.mjs): a one-rank out-of-place ncclAvg on float64 with
   * 65537 elements left the last output element unwritten (allReduce, reduce
   * and reduceScatter alike) while ncclSum wrote it.
   */
  private ncclOp(op: ReduceOpName | undefined): ReduceOpName {
    const name = op ?? 'sum';
    return name === 'avg' && this.parts.size === 1 ? 'sum' : name;
  }

  /** Resolves when every device op submitted so far has settled. */
  drain(): Promise<void> {
    return this.tail.then(() => undefined);
  }

  abort(code: number, message: string, peer?: number, remedy?: string): void {
    this.abortRemedy ??= remedy;
    if (this.comm) this.comm.abort(code, message, peer);
    else {
      const f = this.makingFor;
      this.rejectMaking?.(errorFromNative({ code, message, peer, remedy },
        f ? { op: `${f.name} (making the NCCL communicator)`, rank: this.parts.rank, seq: f.seq, timeoutMs: f.timeoutMs } : { op: 'nccl', rank: this.parts.rank }));
    }
  }

  destroy(): void {
    this.destroyed = true;
    this.stopWatch();
    this.comm?.destroy();
    this.comm = null;
  }

  // While device ops are pending, ringtree's own liveness watches the peers:
  // a dead peer, a failed CPU engine or a peer stuck in a host collective
  // aborts NCCL (ncclCommAbort) instead of waiting for the deadline.
  private startWatch(): void {
    if (this.watch || this.destroyed) return;
    this.pendingSince = Date.now();
    this.watch = setInterval(() => this.check(), WATCH_INTERVAL_MS);
    this.watch.unref();
  }

  private stopWatch(): void {
    if (this.watch) clearInterval(this.watch);
    this.watch = null;
  }

  private check(): void {
    const cpu = this.parts.cpu();
    if (!cpu) return;
    const failure = cpu.failure();
    if (failure) {
      this.abort(failure.code, `the communicator failed: ${failure.message}`, failure.peer);
      return;
    }
    const states = cpu.peerStates();
    const me = states.find((s) => s.rank === this.parts.rank);
    let mixed: typeof states[number] | undefined;
    for (const s of states) {
      if (s.rank === this.parts.rank) continue;
      if (!s.alive) {
        this.abort(2, `rank ${s.rank} (pid ${s.pid}) exited while device operation #${this.seq} was pending`, s.rank);
        return;
      }
      // A peer inside a host collective this rank never called, while this
      // rank waits in a device op: the two backends were mixed up.
      // Only while this rank's device work made no progress for a second, seen
      // on two ticks in a row: a peer that finished its side of our pending
      // collective and moved on to a host one is legitimate (our completion
      // is about to be seen), and a queue of long device ops keeps settling.
      const stalledMs = Date.now() - Math.max(this.pendingSince, this.lastProgress);
      if (me && s.inOp && s.collSeq > me.collSeq && stalledMs > 1000) mixed ??= s;
    }
    this.mixedTicks = mixed ? this.mixedTicks + 1 : 0;
    if (mixed && this.mixedTicks >= 2) {
      const msg = `rank ${mixed.rank} is in host (CPU) collective #${mixed.collSeq} while rank ${this.parts.rank} waits in device (NCCL) operation #${this.seq}: ` +
        'every rank must call the same collective with the same kind of array';
      this.abort(3, msg, mixed.rank, MIXED_KINDS_REMEDY);
      this.parts.abortAll(msg);
    }
  }
}

export { CollectiveMismatchError };

const MIXED_KINDS_REMEDY = 'Give every rank the same kind of array for each collective: device arrays (NCCL) on all ranks, or host TypedArrays ' +
  '(CPU engine) on all ranks. Host and device collectives each run in call order per backend, so the n-th device op of every rank must match.';
