/**
 * The rank program of `ringtree bench` (dist/bench/rank.js), started N times
 * by the launcher: `node dist/bench/rank.js PLAN.json`. Every rank runs the
 * same sweep; rank 0 writes the rows to the plan's result file and reports
 * progress on stdout as `@progress DONE TOTAL LABEL` lines.
 *
 * Timing is nccl-tests': per size, warm-up, then several repetitions (the
 * algorithms interleaved, their order rotated each repetition, a barrier
 * before each), each issuing `iters` ops back to back and waiting for all;
 * a repetition's time per op is averaged over ranks; rows report the median
 * repetition. Correctness is checked after timing on fresh, deterministic
 * inputs whose results are exact (small integers), so #wrong is exact.
 *
 * @module
 */
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { init } from '../init.js';
import { CPU_ALGORITHMS, type Communicator, type HostArray, type CollectiveName } from '../comm.js';
import { DeviceArray } from '../device.js';
import { allocHost } from '../hostMemory.js';
import { autoAlgorithm } from '../algorithmSelection.js';
import { dtypeSize, fromBfloat16Bits, fromFloat16Bits, toBfloat16Bits, toFloat16Bits, type DType, type ReduceOpName } from '../dtype.js';
import type { BenchAlgorithm, BenchCollective, BlockingMode } from './options.js';
import { NCCL_TYPE_NAMES } from './options.js';
import { busBwFactor, measurement, rowGeometry, type BenchRow, type RowAlgorithm } from './report.js';

/** What the CLI asks every rank to run (written as JSON, path in argv[2]). */
export interface RankPlan {
  collectives: BenchCollective[];
  /** Requested sizes in bytes, ascending. */
  sizes: number[];
  dtype: DType;
  op: ReduceOpName;
  root: number;
  algorithms: BenchAlgorithm[];
  /** 0: chosen per size from the warm-up so a repetition takes about `targetRepMs`. */
  iters: number;
  warmupIters: number;
  reps: number;
  check: number;
  blocking: BlockingMode;
  /** Target duration of one timed repetition when `iters` is 0, ms. */
  targetRepMs: number;
  /** Where rank 0 writes {@link RankResult}. */
  resultFile: string;
  /** `'cpu'` (host arrays, the CPU engine; default) or `'nccl'` (device arrays, NCCL). */
  backend?: 'cpu' | 'nccl';
}

/** What rank 0 writes. */
export interface RankResult {
  ranks: number;
  rows: BenchRow[];
  /** Algorithms skipped per collective because the engine lacks the pair. */
  skipped: { collective: BenchCollective; algorithm: BenchAlgorithm; supported: string[] }[];
}

const COMM_KIND: Record<BenchCollective, CollectiveName | null> = {
  allreduce: 'allReduce', reducescatter: 'reduceScatter', allgather: 'allGather',
  broadcast: 'broadcast', reduce: 'reduce', sendrecv: null,
};

/** NCCL's algorithm option (`NCCL_ALGO=allreduce:<algo>`) restricts allReduce only; the others run NCCL's own choice ('auto'). */
export const NCCL_BENCH_ALGORITHMS: Record<CollectiveName, readonly BenchAlgorithm[]> = {
  allReduce: ['ring', 'tree', 'auto'], reduceScatter: ['auto'], allGather: ['auto'], broadcast: ['auto'], reduce: ['auto'], barrier: [],
};

/** The algorithms a collective runs with: those the backend supports among the requested (NCCL: at least 'auto'), `p2p` for sendrecv. */
export function algorithmsFor(collective: BenchCollective, requested: readonly BenchAlgorithm[], backend: 'cpu' | 'nccl' = 'cpu'): { run: RowAlgorithm[]; skipped: BenchAlgorithm[] } {
  const kind = COMM_KIND[collective];
  if (kind === null) return { run: ['p2p'], skipped: [] };
  if (backend === 'nccl') {
    const supported = NCCL_BENCH_ALGORITHMS[kind];
    const run = requested.filter((a) => supported.includes(a));
    if (run.length === 0) run.push('auto');
    return { run, skipped: requested.filter((a) => !run.includes(a)) };
  }
  const supported = CPU_ALGORITHMS[kind] as readonly string[];
  const run = requested.filter((a) => a === 'auto' || supported.includes(a));
  return { run, skipped: requested.filter((a) => !run.includes(a)) };
}

// ---------------------------------------------------------------- typed data

function allocate(dtype: DType, length: number): HostArray {
  switch (dtype) {
    case 'float32': return new Float32Array(length);
    case 'float64': return new Float64Array(length);
    case 'float16':
    case 'bfloat16': return new Uint16Array(length);
    case 'int8': return new Int8Array(length);
    case 'uint8': return new Uint8Array(length);
    case 'int32': return new Int32Array(length);
    case 'int64': return new BigInt64Array(length);
  }
}

/** Element codec: numbers in, numbers out, with the dtype's rounding/wrapping applied on the way in. */
interface Codec {
  set(a: HostArray, i: number, v: number): void;
  get(a: HostArray, i: number): number;
}

function codec(dtype: DType): Codec {
  switch (dtype) {
    case 'float16': return { set: (a, i, v) => { (a as Uint16Array)[i] = toFloat16Bits(v); }, get: (a, i) => fromFloat16Bits((a as Uint16Array)[i]!) };
    case 'bfloat16': return { set: (a, i, v) => { (a as Uint16Array)[i] = toBfloat16Bits(v); }, get: (a, i) => fromBfloat16Bits((a as Uint16Array)[i]!) };
    case 'int64': return { set: (a, i, v) => { (a as BigInt64Array)[i] = BigInt(Math.trunc(v)); }, get: (a, i) => Number((a as BigInt64Array)[i]!) };
    default: return { set: (a, i, v) => { (a as Float32Array)[i] = v; }, get: (a, i) => (a as Float32Array)[i]! };
  }
}

const INTEGER_TYPES: ReadonlySet<DType> = new Set(['int8', 'uint8', 'int32', 'int64']);

/** Rank r's input element i: small integers, so sums and products are exact in every dtype. */
export function inputValue(op: ReduceOpName, rank: number, i: number): number {
  return op === 'prod' ? ((rank + i) % 2) + 1 : ((rank + i) % 3) + 1;
}

/** The exact reduction of element i over `ranks` ranks, before casting to the dtype. */
export function expectedValue(op: ReduceOpName, ranks: number, i: number, integer: boolean): number {
  let acc = op === 'prod' ? 1 : op === 'min' ? Infinity : op === 'max' ? -Infinity : 0;
  for (let r = 0; r < ranks; r++) {
    const v = inputValue(op, r, i);
    acc = op === 'prod' ? acc * v : op === 'min' ? Math.min(acc, v) : op === 'max' ? Math.max(acc, v) : acc + v;
  }
  if (op === 'avg') acc = integer ? Math.trunc(acc / ranks) : acc / ranks;
  return acc;
}

/** Relative tolerance: exact except float avg, where the engine's division may round differently from ours. */
function tolerance(dtype: DType, op: ReduceOpName): number {
  if (op !== 'avg' || INTEGER_TYPES.has(dtype)) return 0;
  return { float32: 1e-6, float64: 1e-12, float16: 1e-3, bfloat16: 1e-2 }[dtype as 'float32'] ?? 0;
}

// ---------------------------------------------------------------- one collective

interface Placement {
  /** Issue one op (Promise path). */
  issue(): Promise<void>;
  /** Run one op synchronously. */
  run(): void;
  /** Fill inputs with the check pattern and outputs with zeros. */
  prepare(): void | Promise<void>;
  /** Count wrong elements on this rank after one op. */
  countWrong(): number | Promise<number>;
  /** Spoil one checked output element (the fault-injection test hook). */
  corrupt(): void;
}

/**
 * Device buffers of one size for the NCCL backend: the collective runs on
 * views of `send`/`recv` (DeviceArrays); checks stage through host mirrors.
 */
class DeviceBuffers {
  readonly send: DeviceArray;
  readonly recv: DeviceArray;
  readonly hostSend: HostArray;
  readonly hostRecv: HostArray;

  constructor(dtype: DType, elements: number) {
    this.send = DeviceArray.alloc(dtype, elements);
    this.recv = DeviceArray.alloc(dtype, elements);
    this.hostSend = allocate(dtype, elements);
    this.hostRecv = allocate(dtype, elements);
  }

  /** Host mirror of a device view of `send` or `recv`. */
  mirror(d: DeviceArray): HostArray {
    const host = d.buffer === this.send.buffer ? this.hostSend : this.hostRecv;
    const first = (d.byteOffset - (d.buffer === this.send.buffer ? this.send : this.recv).byteOffset) / dtypeSize(d.dtype);
    return host.subarray(first, first + d.length) as HostArray;
  }

  /** Write the host mirror of `d` to the device. */
  upload(d: DeviceArray): Promise<void> {
    return d.copyFrom(this.mirror(d));
  }

  /** Read `d` into its host mirror. */
  download(d: DeviceArray): Promise<HostArray> {
    const m = this.mirror(d);
    return d.copyTo(m).then(() => m);
  }

  dispose(): void {
    this.send.dispose();
    this.recv.dispose();
  }
}

class CollectiveBench {
  private readonly send: HostArray;
  private readonly recv: HostArray;
  private readonly codec: Codec;
  private readonly opts: { dtype?: DType };

  constructor(private readonly comm: Communicator, private readonly plan: RankPlan, readonly collective: BenchCollective) {
    const ts = dtypeSize(plan.dtype);
    const maxElements = Math.floor(plan.sizes[plan.sizes.length - 1]! / ts) + comm.size;
    // On huge pages where the engine uses them (InitOptions.hugePages), as
    // Open MPI's buffers are (glibc.malloc.hugetlb=1, lib/bench/mpi.ts).
    const alloc = comm.tuning.hugePages ? (d: DType, k: number) => allocHost(d, k) as HostArray : allocate;
    this.send = alloc(plan.dtype, maxElements);
    this.recv = alloc(plan.dtype, maxElements);
    // Touch every page once now: a first touch costs ~12 us per 4 KiB here and
    // belongs to no collective.
    const one = codec(plan.dtype);
    this.codec = one;
    if (this.send instanceof BigInt64Array) { this.send.fill(1n); (this.recv as BigInt64Array).fill(0n); } else { (this.send as Float32Array).fill(1); (this.recv as Float32Array).fill(0); }
    this.opts = plan.dtype === 'float16' || plan.dtype === 'bfloat16' ? { dtype: plan.dtype } : {};
  }

  /** The out-of-place or in-place form of this collective at `count`, as NCCL defines the positions. */
  placement(count: number, inPlace: boolean, algorithm: RowAlgorithm): Placement {
    const { comm, plan, codec: c } = this;
    const n = comm.size, r = comm.rank;
    const base: { dtype?: DType; algorithm?: BenchAlgorithm } = { ...this.opts, ...(algorithm === 'p2p' ? {} : { algorithm }) };
    const op = plan.op;
    const integer = INTEGER_TYPES.has(plan.dtype);
    const tol = tolerance(plan.dtype, op);
    const expectCast = allocate(plan.dtype, 1);
    const expect = (v: number): number => { c.set(expectCast, 0, v); return c.get(expectCast, 0); };
    const wrongIn = (a: HostArray, start: number, len: number, want: (j: number) => number): number => {
      let wrong = 0;
      for (let j = 0; j < len; j++) {
        const got = c.get(a, start + j), exp = expect(want(j));
        if (tol === 0 ? got !== exp : !(Math.abs(got - exp) <= tol * Math.max(1, Math.abs(exp)))) wrong++;
      }
      return wrong;
    };
    const fillInput = (a: HostArray, start: number, len: number, rank: number, offset = 0): void => {
      for (let j = 0; j < len; j++) c.set(a, start + j, inputValue(op, rank, offset + j));
    };
    const zero = (a: HostArray, start: number, len: number): void => { for (let j = 0; j < len; j++) c.set(a, start + j, 0); };
    const { send, recv } = this;
    const spoil = (a: HostArray, i: number): void => { c.set(a, i, c.get(a, i) + 1000); };
    return this.forms(count, inPlace, base, op, r, n, integer, wrongIn, fillInput, zero, spoil);
  }

  private forms(count: number, inPlace: boolean, base: { dtype?: DType; algorithm?: BenchAlgorithm }, op: ReduceOpName, r: number, n: number, integer: boolean,
    wrongIn: (a: HostArray, start: number, len: number, want: (j: number) => number) => number,
    fillInput: (a: HostArray, start: number, len: number, rank: number, offset?: number) => void,
    zero: (a: HostArray, start: number, len: number) => void, spoil: (a: HostArray, i: number) => void): Placement {
    const { comm, plan, send, recv } = this;
    switch (this.collective) {
      case 'allreduce': {
        const x = inPlace ? recv.subarray(0, count) : send.subarray(0, count);
        const out = recv.subarray(0, count);
        const o = { ...base, op, ...(inPlace ? {} : { out }) };
        return {
          issue: () => comm.allReduce(x, o), run: () => comm.allReduceSync(x, o),
          prepare: () => { if (!inPlace) zero(out, 0, count); fillInput(x, 0, count, r); },
          countWrong: () => wrongIn(out, 0, count, (j) => expectedValue(op, n, j, integer)), corrupt: () => spoil(out, 0),
        };
      }
      case 'reducescatter': {
        const x = inPlace ? recv.subarray(0, n * count) : send.subarray(0, n * count);
        const y = inPlace ? x.subarray(r * count, (r + 1) * count) : recv.subarray(0, count);
        const o = { ...base, op };
        return {
          issue: () => comm.reduceScatter(x, y, o), run: () => comm.reduceScatterSync(x, y, o),
          prepare: () => { if (!inPlace) zero(y, 0, count); fillInput(x, 0, n * count, r); },
          countWrong: () => wrongIn(y, 0, count, (j) => expectedValue(op, n, r * count + j, integer)), corrupt: () => spoil(y, 0),
        };
      }
      case 'allgather': {
        const y = recv.subarray(0, n * count);
        const x = inPlace ? y.subarray(r * count, (r + 1) * count) : send.subarray(0, count);
        return {
          issue: () => comm.allGather(x, y, base), run: () => comm.allGatherSync(x, y, base),
          prepare: () => { zero(y, 0, n * count); fillInput(x, 0, count, r); },
          countWrong: () => wrongIn(y, 0, n * count, (j) => inputValue(op, Math.floor(j / count), j % count)), corrupt: () => spoil(y, 0),
        };
      }
      case 'broadcast': {
        const x = inPlace ? recv.subarray(0, count) : send.subarray(0, count);
        const out = recv.subarray(0, count);
        const o = { ...base, root: plan.root, ...(inPlace ? {} : { out }) };
        return {
          issue: () => comm.broadcast(x, o), run: () => comm.broadcastSync(x, o),
          prepare: () => { zero(out, 0, count); if (r === plan.root) fillInput(x, 0, count, r); },
          countWrong: () => wrongIn(out, 0, count, (j) => inputValue(op, plan.root, j)), corrupt: () => spoil(out, 0),
        };
      }
      case 'reduce': {
        const x = inPlace ? recv.subarray(0, count) : send.subarray(0, count);
        const out = recv.subarray(0, count);
        const o = { ...base, op, root: plan.root, ...(inPlace ? {} : { out }) };
        return {
          issue: () => comm.reduce(x, o), run: () => comm.reduceSync(x, o),
          prepare: () => { if (!inPlace) zero(out, 0, count); fillInput(x, 0, count, r); },
          countWrong: () => (r === plan.root ? wrongIn(out, 0, count, (j) => expectedValue(op, n, j, integer)) : 0), corrupt: () => spoil(out, 0),
        };
      }
      case 'sendrecv': {
        const x = send.subarray(0, count), y = recv.subarray(0, count);
        const to = (r + 1) % n, from = (r - 1 + n) % n;
        return {
          issue: () => comm.sendRecv({ send: x, to, ...this.opts }, { recv: y, from, ...this.opts }),
          run: () => { throw new Error('sendrecv has no synchronous form'); },
          prepare: () => { zero(y, 0, count); fillInput(x, 0, count, r); },
          countWrong: () => wrongIn(y, 0, count, (j) => inputValue(op, from, j)), corrupt: () => spoil(y, 0),
        };
      }
    }
  }
}

/**
 * One collective on device arrays (the NCCL backend): the same placements,
 * inputs and checks as {@link CollectiveBench}, through DeviceArray views,
 * with inputs uploaded and outputs read back around each checked op.
 */
class DeviceCollectiveBench {
  private readonly bufs: DeviceBuffers;
  private readonly codec: Codec;

  constructor(private readonly plan: RankPlan, readonly collective: BenchCollective, size: number) {
    const ts = dtypeSize(plan.dtype);
    const maxElements = Math.floor(plan.sizes[plan.sizes.length - 1]! / ts) + size;
    this.bufs = new DeviceBuffers(plan.dtype, maxElements);
    this.codec = codec(plan.dtype);
  }

  /** Zero both device buffers once (so no timed op reads uninitialised memory). */
  async clear(): Promise<void> {
    await this.bufs.send.fill(0);
    await this.bufs.recv.fill(0);
  }

  placement(comm: Communicator, count: number, inPlace: boolean): Placement {
    const { plan, bufs, codec: c } = this;
    const n = comm.size, r = comm.rank, op = plan.op;
    const integer = INTEGER_TYPES.has(plan.dtype);
    const tol = tolerance(plan.dtype, op);
    const expectCast = allocate(plan.dtype, 1);
    const expect = (v: number): number => { c.set(expectCast, 0, v); return c.get(expectCast, 0); };
    const wrongIn = async (d: DeviceArray, want: (j: number) => number): Promise<number> => {
      const a = await bufs.download(d);
      let wrong = 0;
      for (let j = 0; j < d.length; j++) {
        const got = c.get(a, j), exp = expect(want(j));
        if (tol === 0 ? got !== exp : !(Math.abs(got - exp) <= tol * Math.max(1, Math.abs(exp)))) wrong++;
      }
      return wrong;
    };
    const fillInput = (d: DeviceArray, rank: number): Promise<void> => {
      const a = bufs.mirror(d);
      for (let j = 0; j < d.length; j++) c.set(a, j, inputValue(op, rank, j));
      return bufs.upload(d);
    };
    const zero = (d: DeviceArray): Promise<void> => d.fill(0);
    const spoil = (d: DeviceArray): void => { const a = bufs.mirror(d); if (d.length > 0) c.set(a, 0, c.get(a, 0) + 1000); };
    const { send, recv } = bufs;
    const sendV = (len: number): DeviceArray => send.view(0, len);
    const recvV = (len: number): DeviceArray => recv.view(0, len);
    const noSync = (): void => { throw new Error('device arrays have no synchronous form'); };
    // countWrong reads outputs into the host mirror; corrupt spoils the mirror, so it runs between the two.
    let spoilNext = false;
    const counted = (d: DeviceArray, want: (j: number) => number) => async (): Promise<number> => {
      if (!spoilNext) return wrongIn(d, want);
      spoilNext = false;
      const a = await bufs.download(d);
      if (d.length > 0) spoil(d);
      let wrong = 0;
      for (let j = 0; j < d.length; j++) if (c.get(a, j) !== expect(want(j))) wrong++;
      return wrong;
    };
    const corrupt = (): void => { spoilNext = true; };
    switch (this.collective) {
      case 'allreduce': {
        const x = inPlace ? recvV(count) : sendV(count), out = recvV(count);
        const o = { op, ...(inPlace ? {} : { out }) };
        return {
          issue: () => comm.allReduce(x, o), run: noSync,
          prepare: async () => { if (!inPlace) await zero(out); await fillInput(x, r); },
          countWrong: counted(out, (j) => expectedValue(op, n, j, integer)), corrupt,
        };
      }
      case 'reducescatter': {
        const x = inPlace ? recvV(n * count) : sendV(n * count);
        const y = inPlace ? x.view(r * count, count) : recvV(count);
        return {
          issue: () => comm.reduceScatter(x, y, { op }), run: noSync,
          prepare: async () => { if (!inPlace) await zero(y); await fillInput(x, r); },
          countWrong: counted(y, (j) => expectedValue(op, n, r * count + j, integer)), corrupt,
        };
      }
      case 'allgather': {
        const y = recvV(n * count);
        const x = inPlace ? y.view(r * count, count) : sendV(count);
        return {
          issue: () => comm.allGather(x, y), run: noSync,
          prepare: async () => { await zero(y); await fillInput(x, r); },
          countWrong: counted(y, (j) => inputValue(op, Math.floor(j / count), j % count)), corrupt,
        };
      }
      case 'broadcast': {
        const x = inPlace ? recvV(count) : sendV(count), out = recvV(count);
        const o = { root: plan.root, ...(inPlace ? {} : { out }) };
        return {
          issue: () => comm.broadcast(x, o), run: noSync,
          prepare: async () => { await zero(out); if (r === plan.root) await fillInput(x, r); },
          countWrong: counted(out, (j) => inputValue(op, plan.root, j)), corrupt,
        };
      }
      case 'reduce': {
        const x = inPlace ? recvV(count) : sendV(count), out = recvV(count);
        const o = { op, root: plan.root, ...(inPlace ? {} : { out }) };
        const check = counted(out, (j) => expectedValue(op, n, j, integer));
        return {
          issue: () => comm.reduce(x, o), run: noSync,
          prepare: async () => { if (!inPlace) await zero(out); await fillInput(x, r); },
          countWrong: () => (r === plan.root ? check() : 0), corrupt,
        };
      }
      case 'sendrecv': {
        const x = sendV(count), y = recvV(count);
        const to = (r + 1) % n, from = (r - 1 + n) % n;
        return {
          issue: () => comm.sendRecv({ send: x, to }, { recv: y, from }), run: noSync,
          prepare: async () => { await zero(y); await fillInput(x, r); },
          countWrong: counted(y, (j) => inputValue(op, from, j)), corrupt,
        };
      }
    }
  }

  dispose(): void {
    this.bufs.dispose();
  }
}

/** Issue `iters` ops the way `blocking` says; resolves when all finished. */
async function runOps(p: Placement, iters: number, blocking: BlockingMode): Promise<void> {
  if (blocking === 2) {
    for (let i = 0; i < iters; i++) p.run();
  } else if (blocking === 1) {
    for (let i = 0; i < iters; i++) await p.issue();
  } else {
    const pending: Promise<void>[] = new Array(iters);
    for (let i = 0; i < iters; i++) pending[i] = p.issue();
    await Promise.all(pending);
  }
}

/** Most timed ops per repetition when `-n` is 0 (a repetition aims at `targetRepMs`). */
export const MAX_AUTO_ITERS = 100000;
/** How long the probe that sizes the repetitions runs per form (ms). */
const PROBE_MS = 2;
const PROBE_ROUNDS = 2;
/** Extra warm-up per form at a collective's first size (ms; see runPlan). */
const JIT_WARMUP_MS = 50;

function clampIters(n: number): number {
  return Math.min(MAX_AUTO_ITERS, Math.max(1, Math.round(n)));
}

/**
 * The barrier before a timed loop. Synchronous calls (`-z 2`) leave a
 * synchronous barrier within a microsecond of each other, as MPI_Barrier
 * does for the Open MPI peer; an awaited barrier lets ranks start tens of
 * microseconds apart (each wakes through its own event loop), which a
 * repetition of small ops would count as their time.
 */
async function startTogether(comm: Communicator, blocking: BlockingMode): Promise<void> {
  if (blocking === 2) comm.barrierSync();
  else await comm.barrier();
}

/** RINGTREE_BENCH_FAULT_INJECT=wrong: rank 0 spoils one element of its first check, so tests can see #wrong and the exit code react. */
const faultInjected = process.env.RINGTREE_BENCH_FAULT_INJECT === 'wrong';

function nowUs(): number {
  return Number(process.hrtime.bigint()) / 1e3;
}

/** Run the whole plan on this rank; rank 0 returns the result, others null. */
export async function runPlan(comm: Communicator, plan: RankPlan): Promise<RankResult | null> {
  const n = comm.size;
  const rows: BenchRow[] = [];
  const skipped: RankResult['skipped'] = [];
  const ts = dtypeSize(plan.dtype);
  const total = plan.collectives.length * plan.sizes.length;
  const nccl = plan.backend === 'nccl';
  // NCCL: one communicator per algorithm, split off before the parent's NCCL
  // side exists, so each child makes its own NCCL communicator with its
  // ncclAlgorithm (fixed per communicator).
  const ncclComms = new Map<RowAlgorithm, Communicator>();
  if (nccl) {
    const wanted = new Set(plan.collectives.flatMap((c) => algorithmsFor(c, plan.algorithms, 'nccl').run));
    for (const a of ['ring', 'tree', 'auto', 'p2p'] as const) {
      if (!wanted.has(a)) continue;
      const child = await comm.split(0, comm.rank, { ncclAlgorithm: a === 'p2p' ? 'auto' : a });
      ncclComms.set(a, child!);
    }
  }
  let done = 0;
  try {
    for (const collective of plan.collectives) {
      const { run: algorithms, skipped: skip } = algorithmsFor(collective, plan.algorithms, plan.backend);
      for (const a of skip) {
        skipped.push({ collective, algorithm: a, supported: [...(nccl ? NCCL_BENCH_ALGORITHMS : CPU_ALGORITHMS)[COMM_KIND[collective]!]] });
      }
      const bench = nccl ? null : new CollectiveBench(comm, plan, collective);
      const deviceBench = nccl ? new DeviceCollectiveBench(plan, collective, n) : null;
      if (deviceBench) await deviceBench.clear();
      const placements = collective === 'sendrecv' ? [false] : [false, true];
      const factor = busBwFactor(collective, n);
      let firstSize = true;
      for (const bytes of plan.sizes) {
        const { size, count } = rowGeometry(collective, bytes, n, ts);
        const forms = algorithms.map((a) => placements.map((ip) => (deviceBench ? deviceBench.placement(ncclComms.get(a)!, count, ip) : bench!.placement(count, ip, a))));
        // Warm-up with every algorithm and placement that will be timed; its
        // duration sizes the repetitions (rank 0 decides, all ranks follow).
        let slowestUs = 0;
        for (const f of forms) {
          for (const p of f) {
            await comm.barrier();
            const t0 = nowUs();
            const w = Math.max(plan.warmupIters, plan.iters === 0 ? 1 : 0);
            await runOps(p, w, plan.blocking);
            if (w > 0) slowestUs = Math.max(slowestUs, (nowUs() - t0) / w);
          }
        }
        if (firstSize && !nccl && plan.warmupIters > 0 && slowestUs > 0) {
          // The first size of a collective also warms the JIT: its loops and
          // the call path are still being compiled for the first tens of
          // milliseconds, which made the first row 1.5-3x slower than the
          // next at small sizes. About JIT_WARMUP_MS of ops per form,
          // sized from the warm-up (rank 0 decides); none with -w 0.
          const extra = new Float64Array([clampIters((JIT_WARMUP_MS * 1000) / Math.max(slowestUs, 0.1))]);
          await comm.broadcast(extra, { root: 0 });
          for (const f of forms) {
            for (const p of f) {
              await startTogether(comm, plan.blocking);
              await runOps(p, extra[0]!, plan.blocking);
            }
          }
        }
        firstSize = false;
        let iters = plan.iters;
        if (iters === 0) {
          // A few warm-up ops misjudge small sizes (first calls run cold, and
          // the JIT is still compiling the loop), so time probes of about 2 ms
          // per form, each sized from the last, before sizing the repetitions.
          for (let round = 0; round < PROBE_ROUNDS; round++) {
            const probe = new Float64Array([clampIters((PROBE_MS * 1000) / Math.max(slowestUs, 0.1))]);
            await comm.broadcast(probe, { root: 0 });
            slowestUs = 0;
            for (const f of forms) {
              for (const p of f) {
                await startTogether(comm, plan.blocking);
                const t0 = nowUs();
                await runOps(p, probe[0]!, plan.blocking);
                slowestUs = Math.max(slowestUs, (nowUs() - t0) / probe[0]!);
              }
            }
          }
          const decided = new Float64Array([clampIters((plan.targetRepMs * 1000) / Math.max(slowestUs, 0.1))]);
          await comm.broadcast(decided, { root: 0 });
          iters = decided[0]!;
        }
        // samples[a][p][rep], us per op on this rank.
        // CPU time of this process (JS thread + engine threads) over wall time,
        // summed over repetitions: shows whether waiting ranks spin or sleep.
        const cpuBusy = forms.map((f) => f.map(() => ({ cpuUs: 0, wallUs: 0 })));
        const samples = forms.map((f) => f.map(() => new Float64Array(plan.reps)));
        for (let rep = 0; rep < plan.reps; rep++) {
          for (let k = 0; k < forms.length; k++) {
            const a = (k + rep) % forms.length;
            for (let p = 0; p < forms[a]!.length; p++) {
              await startTogether(comm, plan.blocking);
              const cpu0 = process.cpuUsage();
              const t0 = nowUs();
              await runOps(forms[a]![p]!, iters, plan.blocking);
              const wall = nowUs() - t0;
              const cpu = process.cpuUsage(cpu0);
              samples[a]![p]![rep] = wall / iters;
              cpuBusy[a]![p]!.cpuUs += cpu.user + cpu.system;
              cpuBusy[a]![p]!.wallUs += wall;
            }
          }
        }
        // Per (algorithm, placement): reps times, #wrong, CPU busy fraction.
        const stride = plan.reps + 2;
        const flat = new Float64Array(forms.length * placements.length * stride);
        samples.forEach((byP, a) => byP.forEach((s, p) => {
          flat.set(s, (a * placements.length + p) * stride);
          const b = cpuBusy[a]![p]!;
          flat[(a * placements.length + p) * stride + plan.reps + 1] = b.wallUs > 0 ? b.cpuUs / b.wallUs : 0;
        }));
        if (plan.check > 0) {
          for (let c = 0; c < plan.check; c++) {
            for (let a = 0; a < forms.length; a++) {
              for (let p = 0; p < placements.length; p++) {
                const form = forms[a]![p]!;
                await form.prepare();
                await comm.barrier();
                if (plan.blocking === 2) form.run(); else await form.issue();
                // Test hook: proves a wrong result reaches #wrong and the exit code.
                if (faultInjected && comm.rank === 0 && c === 0 && a === 0 && p === 0) form.corrupt();
                flat[(a * placements.length + p) * stride + plan.reps]! += await form.countWrong();
              }
            }
          }
        }
        // What 'auto' actually ran, from the engine's own counters (one op each).
        const resolved = new Map<number, string>();
        const kind = COMM_KIND[collective];
        for (let a = 0; a < algorithms.length; a++) {
          if (algorithms[a] !== 'auto' || kind === null) continue;
          if (nccl) { resolved.set(a, 'NCCL chooses'); continue; }
          await comm.barrier();
          comm.resetStats();
          await forms[a]![0]!.issue();
          const ran = comm.stats()[kind]?.algorithms;
          resolved.set(a, ran ? (ran.tree > 0 ? (ran.ring > 0 ? 'ring+tree' : 'tree') : 'ring') : autoAlgorithm(kind, size, n, CPU_ALGORITHMS[kind]));
        }
        // Times: mean over ranks; wrong: sum over ranks.
        await comm.allReduce(flat, { op: 'sum' });
        if (comm.rank === 0) {
          algorithms.forEach((algorithm, a) => {
            const m = placements.map((_, p) => {
              const off = (a * placements.length + p) * stride;
              const times = Array.from(flat.subarray(off, off + plan.reps), (t) => t / n);
              return { ...measurement(times, size, factor, plan.check > 0 ? flat[off + plan.reps]! : null), cpuBusy: flat[off + plan.reps + 1]! / n };
            });
            rows.push({
              collective, algorithm,
              ...(resolved.has(a) ? { resolved: resolved.get(a)! } : {}),
              size, count, type: NCCL_TYPE_NAMES[plan.dtype],
              redop: collective === 'allgather' || collective === 'broadcast' || collective === 'sendrecv' ? 'none' : plan.op,
              root: collective === 'broadcast' || collective === 'reduce' ? plan.root : -1,
              iters, outOfPlace: m[0]!, inPlace: m[1] ?? null,
            });
          });
          done++;
          process.stdout.write(`@progress ${done} ${total} ${collective} ${size}\n`);
        }
      }
      deviceBench?.dispose();
    }
  } finally {
    for (const c of ncclComms.values()) await c.destroy();
  }
  return comm.rank === 0 ? { ranks: n, rows, skipped } : null;
}

async function main(): Promise<void> {
  const planFile = process.argv[2];
  if (!planFile) throw new Error('usage: node dist/bench/rank.js PLAN.json (started by `ringtree bench`)');
  const plan = JSON.parse(readFileSync(planFile, 'utf8')) as RankPlan;
  const comm = await init();
  try {
    const result = await runPlan(comm, plan);
    if (result) writeFileSync(plan.resultFile, JSON.stringify(result));
    await comm.barrier();
  } finally {
    await comm.destroy();
  }
}

// Run only as the launched program, not when imported (tests import the pure parts).
if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`ringtree bench rank ${process.env.RANK ?? '?'}: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
