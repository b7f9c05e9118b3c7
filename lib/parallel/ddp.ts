/**
 * Data-parallel training over the user's own parameter and gradient arrays,
 * after PyTorch's `DistributedDataParallel`: gradients are packed into
 * buckets (filled in reverse registration order, a small first bucket, then
 * 25 MiB ones), each bucket is summed across ranks as soon as all of its
 * gradients are ready, and `synchronize()` writes the averages back.
 *
 * ringtree is not an autograd framework: the user's backward pass calls
 * {@link DistributedDataParallel.markReady} when a gradient is final (or
 * nothing, and `synchronize()` sends everything at the end).
 *
 * ```ts
 * const ddp = await DistributedDataParallel.create(comm, params, grads);
 * for (const batch of batches) {
 *   zeroGrads(); forward(batch);
 *   backward(batch, (i) => ddp.markReady(i));   // last layer first
 *   await ddp.synchronize();                     // grads now hold the global average
 *   sgd.step();
 * }
 * ```
 *
 * Parameters and gradients are host Float32Arrays (buckets reduced on the CPU
 * engine) or float32 {@link DeviceArray}s on one GPU (buckets are device
 * arrays reduced through NCCL; gradients packed and unpacked with
 * device-to-device copies; the bf16/fp16 compression runs ringtree's embedded
 * CUDA cast kernels). Never a mix. The bucket logic, launch order, errors,
 * `noSync` and `join` are the same for both.
 *
 * @module
 */
import type { Communicator, Algorithm } from '../comm.js';
import { BackendUnavailableError, InvalidArgumentError, RingtreeError } from '../errors.js';
import { bfloat16ToFloat32, float16ToFloat32, float32ToBfloat16, float32ToFloat16 } from '../dtype.js';
import { DeviceArray } from '../device.js';
import { allocHost } from '../hostMemory.js';

/** PyTorch's `bucket_cap_mb` default: 25 MiB per bucket. */
export const DEFAULT_BUCKET_CAP_MB = 25;
/** PyTorch's `dist._DEFAULT_FIRST_BUCKET_BYTES`: the first bucket holds 1 MiB. */
export const DEFAULT_FIRST_BUCKET_CAP_MB = 1;

/**
 * The arrays DDP works over: host Float32Arrays, or float32 DeviceArrays all
 * on one device.
 */
export type DdpArray = Float32Array | DeviceArray;

/** How buckets travel: as float32, or rounded to bfloat16/float16 (half the bytes) and widened back. */
export type GradientCompression = 'none' | 'bf16' | 'fp16';

/** Options of {@link DistributedDataParallel.create}. */
export interface DdpOptions {
  /** Cap of every bucket but the first, in MiB (2^20 bytes of float32 gradients). Default 25. */
  bucketCapMb?: number;
  /** Cap of the first bucket (the last-registered gradients, ready first), in MiB. Default 1. */
  firstBucketCapMb?: number;
  /**
   * `'bf16'` / `'fp16'`: each bucket is divided by the world size, rounded to
   * 16 bits, summed across ranks as bfloat16/float16 and widened back (PyTorch's
   * `bf16_compress_hook` / `fp16_compress_hook`). Halves the bytes, costs
   * precision (bf16 keeps 8 significant bits). Default `'none'`.
   */
  compression?: GradientCompression;
  /**
   * When true, DDP allocates the bucket memory once and {@link DistributedDataParallel.grads}
   * are views into it (PyTorch's `gradient_as_bucket_view`): no copy into or out of
   * the buckets. The arrays passed to `create` are read once (their values seed
   * the views) and never touched again; write gradients into `ddp.grads[i]` from
   * then on. Default false: DDP copies each gradient into its bucket at launch
   * and the averages back into the caller's arrays in `synchronize()`.
   */
  gradsAsBucketViews?: boolean;
  /** Broadcast every parameter from rank 0 in `create` (PyTorch does). Default true. */
  broadcastParams?: boolean;
  /** Allreduce algorithm for the buckets. Default `'ring'`. */
  algorithm?: Algorithm;
  /** Deadline of each bucket's allreduce in ms. Default: the communicator's (300 000). */
  timeoutMs?: number;
}

/** One bucket, as {@link DistributedDataParallel.buckets} describes it. */
export interface BucketInfo {
  /** Launch order: bucket 0 is sent first. */
  index: number;
  /** Registration indices of its gradients, in the order they sit in the bucket (descending). */
  paramIndices: readonly number[];
  /** Float32 elements in the bucket. */
  elements: number;
  /** Bytes on the wire per allreduce input (2 per element when compressed, 4 otherwise). */
  wireBytes: number;
}

/** When one bucket's allreduce was handed to the engine and when it settled, `performance.now()` ms. */
export interface BucketTiming {
  index: number;
  /** Bytes sent as the allreduce input. */
  wireBytes: number;
  /** Submitted to the communicator (its progress thread runs buckets one after another). */
  launchedAt: number;
  /** The Promise settled in JS; late by up to one event-loop turn if the JS thread was busy. */
  settledAt: number;
}

/** Options of {@link DistributedDataParallel.join}. */
export interface JoinOptions {
  /**
   * true (PyTorch's default): gradients are always divided by the world size,
   * so a joined rank's zeros count as contributions. false: divided by the
   * number of ranks that still had data this step.
   */
  divideByInitialWorldSize?: boolean;
  /** false runs `fn` alone, with no join protocol (every rank must then have equally many steps). Default true. */
  enable?: boolean;
  /** After every rank has joined, broadcast the parameters from the last rank to join (the highest such rank). Default true. */
  syncFinalParams?: boolean;
}

interface Bucket extends BucketInfo {
  /** Offset of each of its gradients in `flat` (same order as paramIndices). */
  offsets: number[];
  /** Float32 bucket memory: host, or a DeviceArray on the parameters' device. */
  flat: Float32Array | DeviceArray;
  /** The 16-bit wire copy when compressed (a bfloat16/float16 DeviceArray on device). */
  wire: Uint16Array | DeviceArray | null;
  pending: number;
}

interface StepState {
  ready: boolean[];
  launchedUpTo: number;
  launches: Array<Promise<void>>;
  timings: BucketTiming[];
  presence: Float32Array | null;
  presencePromise: Promise<void> | null;
}

interface JoinState {
  divideByInitialWorldSize: boolean;
}

const MIB = 1024 * 1024;

function strip(message: string): string {
  return message.split('\nRemedy:')[0]!.replace(/ \[op [^\]]*\]$/, '');
}

/**
 * Data-parallel gradient synchronisation over the caller's Float32Arrays or
 * float32 DeviceArrays. Make it with {@link DistributedDataParallel.create};
 * every rank must create it with the same parameter shapes in the same order
 * (and the same kind of array).
 */
export class DistributedDataParallel<T extends DdpArray = Float32Array> {
  /** The communicator the buckets are reduced over. */
  readonly comm: Communicator;
  /** The parameters, in registration order (the caller's arrays). */
  readonly params: readonly T[];
  /**
   * The gradients DDP reads and writes, in registration order: the caller's
   * arrays, or views into bucket memory with `gradsAsBucketViews` (DeviceArray
   * views on device).
   */
  readonly grads: readonly T[];
  /** True when the arrays are DeviceArrays (buckets on the GPU, reduced through NCCL). */
  readonly onDevice: boolean;
  /** Bucket layout, in launch order. */
  readonly buckets: readonly BucketInfo[];
  /** Which bucket each gradient is in (by registration index). */
  readonly bucketOf: readonly number[];
  private readonly internal: Bucket[];
  private readonly compression: GradientCompression;
  private readonly asViews: boolean;
  private readonly algorithm: Algorithm;
  private readonly timeoutMs: number | undefined;
  private step: StepState;
  private skipSync = false;
  private syncing = false;
  private joinState: JoinState | null = null;
  private lastTimings: BucketTiming[] = [];
  // Joined ranks' zero buckets on device (made on first use).
  private shadow: { zeros: DeviceArray; scratch: DeviceArray } | null = null;

  private constructor(comm: Communicator, params: T[], grads: T[], options: Required<Pick<DdpOptions,
    'bucketCapMb' | 'firstBucketCapMb' | 'compression' | 'gradsAsBucketViews' | 'algorithm'>> & { timeoutMs?: number }) {
    this.comm = comm;
    this.params = Object.freeze(params.slice());
    this.onDevice = params[0] instanceof DeviceArray;
    this.compression = options.compression;
    this.asViews = options.gradsAsBucketViews;
    this.algorithm = options.algorithm;
    this.timeoutMs = options.timeoutMs;
    const device = this.onDevice ? (params[0] as DeviceArray).device : null;
    // Host buckets of 1 MiB or more on huge pages, where the engine uses them (allocHost).
    const huge = device === null && comm.tuning?.hugePages === true;
    this.internal = assignBuckets(grads.map((g) => g.length), options.firstBucketCapMb * MIB, options.bucketCapMb * MIB, this.compression, device, huge);
    const bucketOf = new Array<number>(grads.length);
    const finalGrads = grads.slice();
    for (const b of this.internal) {
      b.paramIndices.forEach((p, j) => {
        bucketOf[p] = b.index;
        if (this.asViews) {
          const off = b.offsets[j]!;
          if (b.flat instanceof DeviceArray) {
            // Seeded from the caller's array in create() (a device-to-device copy).
            finalGrads[p] = b.flat.view(off, grads[p]!.length) as T;
          } else {
            const view = b.flat.subarray(off, off + grads[p]!.length);
            view.set(grads[p] as Float32Array);
            finalGrads[p] = view as T;
          }
        }
      });
    }
    this.grads = Object.freeze(finalGrads);
    this.bucketOf = Object.freeze(bucketOf);
    this.buckets = Object.freeze(this.internal.map((b) => Object.freeze({
      index: b.index, paramIndices: b.paramIndices, elements: b.elements, wireBytes: b.wireBytes,
    })));
    this.step = this.freshStep();
  }

  /**
   * Make the DDP wrapper: checks the arrays, lays out the buckets and (by
   * default) broadcasts every parameter from rank 0, so all ranks start equal.
   * Collective: every rank must call it with the same shapes in the same order.
   *
   * @param comm the communicator to reduce over (any size, 1 included).
   * @param params parameters in registration order (the order the model defines them):
   *   host Float32Arrays, or float32 DeviceArrays all on one device (buckets then live
   *   on that device and are reduced through NCCL). Never a mix.
   * @param grads their gradients, the same kind, `grads[i].length === params[i].length`.
   * @param options bucket caps (MiB), compression, gradient views, algorithm (host arrays;
   *   NCCL's is fixed per communicator), deadline.
   * @returns a Promise of the wrapper; it rejects with {@link InvalidArgumentError} for
   *   mismatched lengths, mixed host/device arrays, non-float32 arrays, arrays on different
   *   devices or bad options (the message names the argument); with
   *   {@link BackendUnavailableError} for compression on device arrays when the addon has no
   *   CUDA kernels (built without nvcc) or no GPU/NCCL; and with the communicator's error
   *   classes (PeerLostError, TimeoutError, ...) if the broadcast fails.
   */
  static async create<T extends DdpArray = Float32Array>(comm: Communicator, params: T[], grads: T[], options: DdpOptions = {}): Promise<DistributedDataParallel<T>> {
    const op = 'DistributedDataParallel.create';
    if (!Array.isArray(params) || !Array.isArray(grads)) {
      throw new InvalidArgumentError('`params` and `grads` must be arrays of Float32Array or of DeviceArray', { op });
    }
    if (params.length !== grads.length) {
      throw new InvalidArgumentError(`\`params\` has ${params.length} arrays but \`grads\` has ${grads.length}`, { op });
    }
    if (params.length === 0) throw new InvalidArgumentError('`params` is empty: nothing to train', { op });
    checkArrays(params, grads, op);
    const cap = (value: number | undefined, fallback: number, name: string): number => {
      if (value === undefined) return fallback;
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw new InvalidArgumentError(`\`${name}\` must be a positive number of MiB, got ${String(value)}`, { op });
      }
      return value;
    };
    const compression = options.compression ?? 'none';
    if (compression !== 'none' && compression !== 'bf16' && compression !== 'fp16') {
      throw new InvalidArgumentError(`\`compression\` must be 'none', 'bf16' or 'fp16', got ${String(compression)}`, { op });
    }
    const ddp = new DistributedDataParallel<T>(comm, params, grads, {
      bucketCapMb: cap(options.bucketCapMb, DEFAULT_BUCKET_CAP_MB, 'bucketCapMb'),
      firstBucketCapMb: cap(options.firstBucketCapMb, DEFAULT_FIRST_BUCKET_CAP_MB, 'firstBucketCapMb'),
      compression,
      gradsAsBucketViews: options.gradsAsBucketViews ?? false,
      algorithm: options.algorithm ?? 'ring',
      timeoutMs: options.timeoutMs,
    });
    try {
      if (ddp.onDevice) await ddp.prepareDevice(grads as DeviceArray[]);
      if ((options.broadcastParams ?? true) && comm.size > 1) {
        // Submitted together: the engine (CPU or NCCL) runs them in order, one Promise round trip each in flight.
        await Promise.all(params.map((p) => comm.broadcast(p, { root: 0, timeoutMs: options.timeoutMs })));
      }
    } catch (e) {
      ddp.dispose();
      throw e;
    }
    return ddp;
  }

  /**
   * Free the bucket memory now (device buckets; host buckets are left to the
   * garbage collector). The gradient views of `gradsAsBucketViews` die with
   * it. Pending work keeps the memory until it completed. Idempotent.
   */
  dispose(): void {
    for (const b of this.internal) {
      if (b.flat instanceof DeviceArray) b.flat.dispose();
      if (b.wire instanceof DeviceArray) b.wire.dispose();
    }
    this.shadow?.zeros.dispose();
    this.shadow?.scratch.dispose();
    this.shadow = null;
  }

  /**
   * Gradient `index` (registration order) is final for this step. When it
   * completes its bucket, that bucket's allreduce is launched, but only after
   * every lower-index bucket was launched: buckets leave in index order on
   * every rank, so ranks never pair different buckets. Inside {@link noSync}
   * this does nothing. Do not write the gradient again before
   * {@link synchronize} settles.
   *
   * @throws {InvalidArgumentError} for an index out of range, a gradient marked
   *   twice in one step, or a call while the previous `synchronize()` is pending.
   */
  markReady(index: number): void {
    if (this.skipSync) return;
    if (this.syncing) {
      throw new InvalidArgumentError('markReady() called while synchronize() is still pending; await it first', { op: 'ddp.markReady', rank: this.comm.rank });
    }
    if (!Number.isInteger(index) || index < 0 || index >= this.grads.length) {
      throw new InvalidArgumentError(`\`index\` must be an integer in [0, ${this.grads.length - 1}], got ${String(index)}`, { op: 'ddp.markReady', rank: this.comm.rank });
    }
    if (this.step.ready[index]) {
      throw new InvalidArgumentError(`gradient ${index} was already marked ready in this step`, { op: 'ddp.markReady', rank: this.comm.rank });
    }
    this.beginStepIfNeeded(true);
    this.step.ready[index] = true;
    const bucket = this.internal[this.bucketOf[index]!]!;
    bucket.pending--;
    this.launchReadyBuckets();
  }

  /**
   * Finish the step: marks every gradient not yet marked ready, waits for
   * every bucket, and leaves the average over ranks of each gradient in
   * {@link grads} (the caller's arrays, or the bucket views). Inside
   * {@link noSync} it resolves at once and leaves local gradients alone.
   *
   * @returns a Promise that rejects, once no bucket is in flight any more, with
   *   the error class of the failed collective (PeerLostError, TimeoutError,
   *   AbortedError, CollectiveMismatchError, ...), its message naming the first
   *   failed bucket and that bucket's parameter indices, `cause` the original error.
   *   Gradients are then undefined for this step.
   */
  async synchronize(): Promise<void> {
    if (this.skipSync) return;
    if (this.syncing) throw new InvalidArgumentError('synchronize() is already pending; await it first', { op: 'ddp.synchronize', rank: this.comm.rank });
    this.syncing = true;
    const step = this.step;
    try {
      this.beginStepIfNeeded(true);
      for (let i = 0; i < this.grads.length; i++) {
        if (!step.ready[i]) {
          step.ready[i] = true;
          this.internal[this.bucketOf[i]!]!.pending--;
        }
      }
      this.launchReadyBuckets();
      const settled = await Promise.allSettled([step.presencePromise ?? Promise.resolve(), ...step.launches]);
      const failedAt = settled.findIndex((s) => s.status === 'rejected');
      if (failedAt >= 0) throw this.bucketError(failedAt - 1, (settled[failedAt] as PromiseRejectedResult).reason);
      let divisor = this.comm.size;
      if (this.joinState && !this.joinState.divideByInitialWorldSize) divisor = step.presence![0]!;
      if (this.onDevice) await Promise.all(this.internal.map((b) => this.finishDeviceBucket(b, divisor)));
      else for (const b of this.internal) this.finishBucket(b, divisor);
      this.lastTimings = step.timings;
    } finally {
      this.step = this.freshStep();
      for (const b of this.internal) b.pending = b.paramIndices.length;
      this.syncing = false;
    }
  }

  /**
   * Run `fn` (one or more forward/backward passes) without synchronising:
   * gradients accumulate locally, `markReady` and `synchronize` do nothing,
   * and the next synchronised step sends the accumulated sums (PyTorch's
   * `no_sync()`). Accumulate by adding into the gradients, as the reference
   * layers do. Inside {@link join}, each call counts as one step the joined
   * ranks shadow (without any bucket traffic).
   *
   * @returns what `fn` returns (awaited).
   * @throws whatever `fn` throws; {@link InvalidArgumentError} when a synchronised
   *   step is half done (some gradients already marked ready).
   */
  async noSync<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.step.ready.some(Boolean) || this.syncing) {
      throw new InvalidArgumentError('noSync() entered in the middle of a synchronised step; call it between steps', { op: 'ddp.noSync', rank: this.comm.rank });
    }
    const outer = this.skipSync;
    this.skipSync = true;
    let result: T;
    try {
      result = await fn();
    } finally {
      this.skipSync = outer;
    }
    if (!outer && this.joinState) {
      // Tell joined ranks this step has no bucket traffic.
      await this.comm.allReduce(new Float32Array([1, 0]), { timeoutMs: this.timeoutMs });
    }
    return result;
  }

  /**
   * Uneven inputs: run `fn` (this rank's training loop) so that ranks with
   * fewer batches keep answering the others' collectives after `fn` returns.
   *
   * What runs: in join mode every step of an active rank starts with a small
   * "presence" allreduce of `[1, sync]` (sync = 1 for a synchronised step, 0
   * for a {@link noSync} one). A rank whose `fn` has returned loops: it
   * contributes `[0, 0]`; when the sum's first entry is 0 every rank has
   * joined and the loop ends; when the second entry is non-zero it shadows
   * the step by reducing zero-filled buckets (same sizes, same dtype, in
   * bucket order) and changes none of its own gradients or parameters.
   * Active ranks divide by the world size (`divideByInitialWorldSize`, the
   * default, as PyTorch) or by the number of active ranks that step. At the
   * end, the parameters are broadcast from the highest-numbered rank among
   * those that joined last (they took every step), PyTorch's "sync final
   * model". Not implemented from PyTorch: `throw_on_early_termination` and
   * module-buffer broadcasts (there are no buffers here).
   *
   * If `fn` throws, the communicator is aborted (peers get AbortedError instead
   * of waiting for a step that never comes) and the error is rethrown.
   * Collective: every rank calls `join` around its loop.
   *
   * @returns what `fn` returned on this rank.
   * @throws {InvalidArgumentError} when nested; the communicator's error classes from the shadowing collectives.
   */
  async join<T>(fn: () => T | Promise<T>, options: JoinOptions = {}): Promise<T> {
    if (options.enable === false) return fn();
    if (this.joinState) throw new InvalidArgumentError('join() cannot be nested', { op: 'ddp.join', rank: this.comm.rank });
    this.joinState = { divideByInitialWorldSize: options.divideByInitialWorldSize ?? true };
    let result: T;
    try {
      try {
        result = await fn();
      } catch (e) {
        this.comm.abort(`rank ${this.comm.rank} failed inside DistributedDataParallel.join(): ${e instanceof Error ? e.message : String(e)}`);
        throw e;
      }
      const lastJoiner = await this.shadowUntilAllJoined();
      if ((options.syncFinalParams ?? true) && this.comm.size > 1) {
        const who = new Int32Array([lastJoiner ? this.comm.rank : -1]);
        await this.comm.allReduce(who, { op: 'max', timeoutMs: this.timeoutMs });
        await Promise.all(this.params.map((p) => this.comm.broadcast(p, { root: who[0]!, timeoutMs: this.timeoutMs })));
      }
    } finally {
      this.joinState = null;
    }
    return result;
  }

  /** Per-bucket launch and settle times of the last synchronised step (empty before the first). */
  lastStepTimings(): readonly BucketTiming[] {
    return this.lastTimings;
  }

  // ---- internals ----

  private freshStep(): StepState {
    return { ready: new Array<boolean>(this.params.length).fill(false), launchedUpTo: 0, launches: [], timings: [], presence: null, presencePromise: null };
  }

  /** In join mode, the first event of a synchronised step tells the joined ranks a step is coming. */
  private beginStepIfNeeded(sync: boolean): void {
    if (!this.joinState || this.step.presence) return;
    const presence = new Float32Array([1, sync ? 1 : 0]);
    this.step.presence = presence;
    this.step.presencePromise = this.comm.allReduce(presence, { timeoutMs: this.timeoutMs });
    this.step.presencePromise.catch(() => { /* reported by synchronize() */ });
  }

  private launchReadyBuckets(): void {
    const step = this.step;
    while (step.launchedUpTo < this.internal.length && this.internal[step.launchedUpTo]!.pending === 0) {
      const b = this.internal[step.launchedUpTo++]!;
      this.launch(b, step);
    }
  }

  private launch(b: Bucket, step: StepState): void {
    if (this.onDevice) {
      this.launchDevice(b, step);
      return;
    }
    const flat = b.flat as Float32Array;
    if (!this.asViews) {
      b.paramIndices.forEach((p, j) => flat.set(this.grads[p] as Float32Array, b.offsets[j]!));
    }
    const timing: BucketTiming = { index: b.index, wireBytes: b.wireBytes, launchedAt: performance.now(), settledAt: NaN };
    step.timings.push(timing);
    let promise: Promise<void>;
    if (b.wire instanceof Uint16Array) {
      // PyTorch's compress hooks divide before the sum so 16-bit partial sums stay in range.
      // A float32 factor and product, as the device cast kernel computes it.
      const inv = Math.fround(1 / this.comm.size);
      for (let i = 0; i < flat.length; i++) flat[i] = flat[i]! * inv;
      if (this.compression === 'bf16') float32ToBfloat16(flat, b.wire);
      else float32ToFloat16(flat, b.wire);
      promise = this.comm.allReduce(b.wire, { op: 'sum', dtype: this.compression === 'bf16' ? 'bfloat16' : 'float16', algorithm: this.algorithm, timeoutMs: this.timeoutMs });
    } else {
      promise = this.comm.allReduce(flat, { op: 'sum', algorithm: this.algorithm, timeoutMs: this.timeoutMs });
    }
    const tracked = promise.finally(() => { timing.settledAt = performance.now(); });
    tracked.catch(() => { /* reported by synchronize() */ });
    step.launches.push(tracked);
  }

  /**
   * The device launch: pack (device-to-device copies into the bucket), cast
   * to the wire dtype with the 1/size factor fused (compression), then the
   * NCCL allreduce. All submitted now; each DeviceArray's ordering tail makes
   * the copy stream and the NCCL stream run them in this order.
   */
  private launchDevice(b: Bucket, step: StepState): void {
    const flat = b.flat as DeviceArray;
    const parts: Array<Promise<void>> = [];
    if (!this.asViews) {
      b.paramIndices.forEach((p, j) => parts.push(flat.view(b.offsets[j]!, this.grads[p]!.length).copyFromDevice(this.grads[p] as DeviceArray)));
    }
    const timing: BucketTiming = { index: b.index, wireBytes: b.wireBytes, launchedAt: performance.now(), settledAt: NaN };
    step.timings.push(timing);
    if (b.wire instanceof DeviceArray) {
      parts.push(b.wire.convertFrom(flat, { scale: 1 / this.comm.size }));
      parts.push(this.comm.allReduce(b.wire, { op: 'sum', timeoutMs: this.timeoutMs }));
    } else {
      parts.push(this.comm.allReduce(flat, { op: this.deviceOp(), timeoutMs: this.timeoutMs }));
    }
    // The first failure in submission order (a failed pack before the allreduce it fed).
    const tracked = Promise.allSettled(parts).then((results) => {
      timing.settledAt = performance.now();
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    });
    tracked.catch(() => { /* reported by synchronize() */ });
    step.launches.push(tracked);
  }

  /**
   * The NCCL reduction of uncompressed device buckets: 'avg' (NCCL divides,
   * no kernel needed) unless join() divides by the ranks still active, which
   * is only known at synchronize(); then 'sum' and a scaled copy back.
   * The same on every rank: join options are collective.
   */
  private deviceOp(): 'avg' | 'sum' {
    return this.joinState && !this.joinState.divideByInitialWorldSize ? 'sum' : 'avg';
  }

  /** Device finish: widen/scale with the cast kernels, copy back to the caller's gradients (device-to-device). */
  private async finishDeviceBucket(b: Bucket, divisor: number): Promise<void> {
    const flat = b.flat as DeviceArray;
    let scale: number;
    const work: Array<Promise<void>> = [];
    if (b.wire instanceof DeviceArray) {
      // The sum was of pre-divided values; the widening cast applies what is left.
      work.push(flat.convertFrom(b.wire, { scale: this.comm.size / divisor }));
      scale = 1;
    } else {
      scale = this.deviceOp() === 'avg' ? 1 : 1 / divisor;
    }
    if (this.asViews) {
      if (scale !== 1) work.push(flat.convertFrom(flat, { scale }));
    } else {
      b.paramIndices.forEach((p, j) => {
        const g = this.grads[p] as DeviceArray;
        const src = flat.view(b.offsets[j]!, g.length);
        work.push(scale === 1 ? g.copyFromDevice(src) : g.convertFrom(src, { scale }));
      });
    }
    const results = await Promise.allSettled(work);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /**
   * Device set-up in create(): seed the gradient views, and with compression
   * check now that the cast kernels exist (a 0-element cast loads the module),
   * so a build without nvcc fails here with BackendUnavailableError rather
   * than at the first synchronize().
   */
  private async prepareDevice(grads: DeviceArray[]): Promise<void> {
    const work: Array<Promise<void>> = [];
    if (this.asViews) {
      this.grads.forEach((g, p) => work.push((g as DeviceArray).copyFromDevice(grads[p]!)));
    }
    const b = this.internal[0]!;
    if (b.wire instanceof DeviceArray) {
      work.push((b.wire.view(0, 0)).convertFrom((b.flat as DeviceArray).view(0, 0)));
      work.push((b.flat as DeviceArray).view(0, 0).convertFrom(b.wire.view(0, 0)));
    }
    const results = await Promise.allSettled(work);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      const e = (failed as PromiseRejectedResult).reason;
      if (e instanceof BackendUnavailableError) {
        throw new BackendUnavailableError(`DistributedDataParallel: compression '${this.compression}' on device arrays needs ringtree's CUDA cast kernels: ${e.message.split('\nRemedy:')[0]}`,
          { op: 'DistributedDataParallel.create', rank: this.comm.rank, remedy: e.remedy, cause: e });
      }
      throw e;
    }
  }

  /** Widen and scale a reduced bucket, and copy it back to the caller's gradients. */
  private finishBucket(b: Bucket, divisor: number): void {
    const flat = b.flat as Float32Array;
    let scale = 1 / divisor;
    if (b.wire instanceof Uint16Array) {
      if (this.compression === 'bf16') bfloat16ToFloat32(b.wire, flat);
      else float16ToFloat32(b.wire, flat);
      scale = this.comm.size / divisor; // the sum was of pre-divided values
    }
    if (this.asViews) {
      if (scale !== 1) for (let i = 0; i < flat.length; i++) flat[i] = flat[i]! * scale;
      return;
    }
    b.paramIndices.forEach((p, j) => {
      const g = this.grads[p] as Float32Array;
      const off = b.offsets[j]!;
      for (let i = 0; i < g.length; i++) g[i] = flat[off + i]! * scale;
    });
  }

  private bucketError(bucketIndex: number, reason: unknown): unknown {
    if (!(reason instanceof RingtreeError)) return reason;
    const what = bucketIndex < 0
      ? 'the join presence allreduce of this step'
      : `bucket ${bucketIndex} (parameters ${this.internal[bucketIndex]!.paramIndices.join(', ')}; ${this.internal[bucketIndex]!.wireBytes} bytes)`;
    const Ctor = reason.constructor as new (m: string, d: object) => RingtreeError;
    return new Ctor(`DistributedDataParallel: allreduce of ${what} failed: ${strip(reason.message)}`, {
      op: 'ddp.synchronize', rank: this.comm.rank, peer: reason.peer, remedy: reason.remedy, cause: reason,
    });
  }

  /**
   * A joined rank's part of one synchronised step on device: zero buckets of
   * the active ranks' wire dtype, reduced in bucket order with their op.
   */
  private async shadowDeviceStep(): Promise<void> {
    if (!this.shadow) {
      const largest = Math.max(...this.internal.map((b) => b.elements));
      const dtype = this.compression === 'bf16' ? 'bfloat16' as const : this.compression === 'fp16' ? 'float16' as const : 'float32' as const;
      const device = (this.params[0] as DeviceArray).device;
      const zeros = DeviceArray.alloc(dtype, largest, { device });
      const scratch = DeviceArray.alloc(dtype, largest, { device });
      this.shadow = { zeros, scratch };
      await zeros.fill(0);
    }
    const { zeros, scratch } = this.shadow;
    const op = this.compression === 'none' ? this.deviceOp() : 'sum';
    await Promise.all(this.internal.map((b) => this.comm.allReduce(zeros.view(0, b.elements), {
      out: scratch.view(0, b.elements), op, timeoutMs: this.timeoutMs,
    })));
  }

  /** Answer active ranks' steps with zeros until every rank has joined. Returns whether this rank joined last. */
  private async shadowUntilAllJoined(): Promise<boolean> {
    if (this.comm.size === 1) return true;
    let rounds = 0;
    let zeros: Float32Array | Uint16Array | null = null;
    let scratch: Float32Array | Uint16Array | null = null;
    for (;;) {
      const presence = new Float32Array([0, 0]);
      await this.comm.allReduce(presence, { timeoutMs: this.timeoutMs });
      if (presence[0] === 0) return rounds === 0;
      rounds++;
      if (presence[1] === 0) continue;
      if (this.onDevice) {
        await this.shadowDeviceStep();
        continue;
      }
      if (!zeros) {
        const largest = Math.max(...this.internal.map((b) => b.elements));
        zeros = this.compression === 'none' ? new Float32Array(largest) : new Uint16Array(largest);
        scratch = this.compression === 'none' ? new Float32Array(largest) : new Uint16Array(largest);
      }
      const dtype = this.compression === 'bf16' ? 'bfloat16' as const : this.compression === 'fp16' ? 'float16' as const : undefined;
      await Promise.all(this.internal.map((b) => this.comm.allReduce(zeros!.subarray(0, b.elements), {
        out: scratch!.subarray(0, b.elements), op: 'sum', dtype, algorithm: this.algorithm, timeoutMs: this.timeoutMs,
      })));
    }
  }
}

/** The kinds, dtypes and devices create() accepts; the message names the argument. */
function checkArrays(params: unknown[], grads: unknown[], op: string): void {
  const name = (v: unknown) => (v instanceof DeviceArray ? `a ${v.dtype} DeviceArray` : `a ${(v as object)?.constructor?.name ?? typeof v}`);
  const first = params[0];
  const onDevice = first instanceof DeviceArray;
  const check = (v: unknown, arg: string) => {
    if (onDevice) {
      if (!(v instanceof DeviceArray)) {
        throw new InvalidArgumentError(`expected a DeviceArray for \`${arg}\` (\`params[0]\` is one), got ${name(v)}: give DeviceArrays for all or host Float32Arrays for all`, { op });
      }
      if (v.dtype !== 'float32') throw new InvalidArgumentError(`\`${arg}\` is ${name(v)}; DistributedDataParallel takes float32 (bf16/fp16 travel on the wire with \`compression\`)`, { op });
      if (v.device !== first.device) throw new InvalidArgumentError(`\`${arg}\` is on device ${v.device} but \`params[0]\` is on device ${first.device}: all arrays must be on one device`, { op });
      v.checkLive(op);
    } else if (!(v instanceof Float32Array)) {
      const hint = v instanceof DeviceArray ? ': give DeviceArrays for all or host Float32Arrays for all' : '';
      throw new InvalidArgumentError(`expected a Float32Array for \`${arg}\`, got ${name(v)}${hint}`, { op });
    }
  };
  params.forEach((p, i) => {
    check(p, `params[${i}]`);
    const g = grads[i];
    check(g, `grads[${i}]`);
    const gl = (g as DdpArray).length, pl = (p as DdpArray).length;
    if (gl !== pl) throw new InvalidArgumentError(`\`grads[${i}]\` has ${gl} elements but \`params[${i}]\` has ${pl}`, { op });
  });
}

/**
 * PyTorch's bucket assignment: walk the gradients from the last registered to
 * the first, close a bucket as soon as it holds at least its cap (the first
 * bucket's cap, then `cap` for all others). A bucket exceeds its cap by less
 * than one gradient; a gradient is never split. This is the layout PyTorch's
 * reducer reaches after its first-iteration rebuild when gradients become
 * ready in reverse registration order; ringtree does not rebuild.
 */
function assignBuckets(lengths: number[], firstCapBytes: number, capBytes: number, compression: GradientCompression, device: number | null,
  hugePages: boolean): Bucket[] {
  // Buckets are reused every step: from 1 MiB, on 2 MiB-aligned huge-page memory (allocHost).
  const hostFloat32 = (n: number): Float32Array => (hugePages && n * 4 >= MIB ? allocHost('float32', n) as Float32Array : new Float32Array(n));
  const hostUint16 = (n: number): Uint16Array => (hugePages && n * 2 >= MIB ? allocHost('float16', n) as Uint16Array : new Uint16Array(n));
  const groups: number[][] = [];
  let current: number[] = [];
  let bytes = 0;
  for (let p = lengths.length - 1; p >= 0; p--) {
    current.push(p);
    bytes += lengths[p]! * 4;
    if (bytes >= (groups.length === 0 ? firstCapBytes : capBytes)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
  }
  if (current.length > 0) groups.push(current);
  return groups.map((paramIndices, index) => {
    const offsets: number[] = [];
    let elements = 0;
    for (const p of paramIndices) {
      offsets.push(elements);
      elements += lengths[p]!;
    }
    return {
      index, paramIndices: Object.freeze(paramIndices), offsets, elements,
      wireBytes: elements * (compression === 'none' ? 4 : 2),
      flat: device === null ? hostFloat32(elements) : DeviceArray.alloc('float32', elements, { device }),
      wire: compression === 'none' ? null
        : device === null ? hostUint16(elements)
          : DeviceArray.alloc(compression === 'bf16' ? 'bfloat16' : 'float16', elements, { device }),
      pending: paramIndices.length,
    };
  });
}
