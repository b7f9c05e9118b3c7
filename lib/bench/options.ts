/**
 * `ringtree bench` options: parsed the way nccl-tests names them
 * (`-b -e -f -n -w -d -o -c -r`), plus ringtree's own (`--algo`, `--nproc`,
 * `--reps`, `--json`, `--plot`, `--save-crossovers`, `--vs`).
 *
 * Pure: no I/O, so every rule here is unit-tested.
 *
 * @module
 */
import { parseArgs } from 'node:util';
import type { DType, ReduceOpName } from '../dtype.js';

/** Collectives the benchmark runs, named as nccl-tests' binaries are (`all_reduce_perf` -> `allreduce`). */
export type BenchCollective = 'allreduce' | 'reducescatter' | 'allgather' | 'broadcast' | 'reduce' | 'sendrecv';

/** Every collective, in the order `all` runs them. */
export const BENCH_COLLECTIVES: readonly BenchCollective[] = Object.freeze(
  ['allreduce', 'reducescatter', 'allgather', 'broadcast', 'reduce', 'sendrecv'] as const);

/** Algorithms `--algo` accepts. `sendrecv` has none and is reported under `p2p`. */
export type BenchAlgorithm = 'ring' | 'tree' | 'auto';

/**
 * How ops are issued within one timed repetition (`-z`, after nccl-tests'
 * `--blocking`): 0 issue `iters` ops back to back, then wait for all (the
 * nccl-tests way, default); 1 await each Promise before the next; 2 the
 * synchronous `*Sync` calls.
 */
export type BlockingMode = 0 | 1 | 2;

/** Everything one `ringtree bench` invocation asks for. */
export interface BenchOptions {
  /** Collectives to run, in order. Default `['allreduce']`. */
  collectives: BenchCollective[];
  /** Local ranks. Default 2. */
  nproc: number;
  /** True when `--nproc` was given (with `--backend nccl` the default is one rank per GPU). */
  nprocGiven?: boolean;
  /** `'cpu'` (the shared-memory/TCP engine on host arrays) or `'nccl'` (NCCL on device arrays). Default `'cpu'`. */
  backend: 'cpu' | 'nccl';
  /** Smallest size in bytes (`-b`, K/M/G suffixes). Default 8. */
  minBytes: number;
  /** Largest size in bytes (`-e`). Default 64 MiB. */
  maxBytes: number;
  /** Size multiplier between rows (`-f`). Default 2. */
  stepFactor: number;
  /** Timed ops per repetition (`-n`); 0 = chosen per size from a probe so a repetition takes about 20 ms (1..100000). Default 0. */
  iters: number;
  /** Warm-up ops per size, algorithm and placement (`-w`). Default 3. */
  warmupIters: number;
  /** Timed repetitions per size, interleaved across algorithms; rows report their median. Default 5. */
  reps: number;
  /** Element type (`-d`). Default float32. */
  dtype: DType;
  /** Reduction (`-o`). Default sum. */
  op: ReduceOpName;
  /** Root of broadcast/reduce (`-r`). Default 0. */
  root: number;
  /** Correctness-check passes per size and algorithm (`-c`); 0 prints `N/A` for #wrong. Default 1. */
  check: number;
  /** How ops are issued (`-z`). Default 0. */
  blocking: BlockingMode;
  /** Algorithms (`--algo`), each measured and tabled separately. Default ring, tree. */
  algorithms: BenchAlgorithm[];
  /** Write every row, the command lines and the environment here (`--json`). */
  jsonFile?: string;
  /** Draw busbw and latency against size here (`--plot`, SVG). */
  plotFile?: string;
  /** Save the measured crossovers here for `'auto'` (`--save-crossovers`; used through RINGTREE_CROSSOVERS_FILE). */
  saveCrossoversFile?: string;
  /** Also run a peer side by side and print ratios (`--vs mpi`). */
  vs?: 'mpi';
  /** With `--vs mpi`: alternate the ringtree sweep and the peer sweeps this many times; ratios use per-size medians over rounds. Default 1. */
  rounds: number;
  /** Print help and exit. */
  help: boolean;
}

/** A bad command line: the message names the flag; `ringtree bench` exits 2. */
export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

/** nccl-tests' `-d` names and ringtree's dtype names, to ringtree's dtype. */
const DATATYPE_NAMES: Readonly<Record<string, DType>> = Object.freeze({
  float: 'float32', float32: 'float32',
  double: 'float64', float64: 'float64',
  half: 'float16', float16: 'float16',
  bfloat16: 'bfloat16',
  int8: 'int8', uint8: 'uint8', int32: 'int32', int64: 'int64',
});

/** The name nccl-tests prints in the `type` column. */
export const NCCL_TYPE_NAMES: Readonly<Record<DType, string>> = Object.freeze({
  float32: 'float', float64: 'double', float16: 'half', bfloat16: 'bfloat16',
  int8: 'int8', uint8: 'uint8', int32: 'int32', int64: 'int64',
});

const OPS: readonly ReduceOpName[] = ['sum', 'prod', 'min', 'max', 'avg'];

/** Usage text of `ringtree bench --help`. */
export const BENCH_HELP = `Usage: ringtree bench [collective] [options]

Benchmark collectives on this machine in nccl-tests' format: one table per
algorithm (out-of-place and in-place time, algbw, busbw, #wrong), then a
ring/tree comparison and the crossover size. With no arguments: allreduce,
CPU backend, 2 local ranks, ring and tree, 8 B to 64 MiB (about a minute).

collective: allreduce (default), reducescatter, allgather, broadcast, reduce,
            sendrecv, all, or a comma-separated list (allreduce,allgather)

Options:
  --nproc N                 local ranks (default 2; with --backend nccl, one
                            per GPU)
  --backend cpu|nccl        cpu: ringtree's engine on host arrays (default);
                            nccl: NCCL on device arrays (--algo ring|tree|auto
                            sets NCCL's allreduce algorithm; other collectives
                            run NCCL's choice)
  -b, --minbytes SIZE       smallest size, K/M/G suffixes (default 8)
  -e, --maxbytes SIZE       largest size (default 64M)
  -f, --stepfactor F        size multiplier between rows (default 2)
  -n, --iters N             timed ops per repetition (default 0: chosen per
                            size so a repetition takes about 20 ms, 1..100000)
  -w, --warmup_iters N      warm-up ops per size and algorithm (default 3)
  --reps R                  timed repetitions, interleaved across algorithms;
                            rows show medians (default 5)
  -d, --datatype T          float, double, half, bfloat16, int8, uint8, int32,
                            int64 (default float)
  -o, --op OP               sum, prod, min, max, avg (default sum)
  -r, --root R              root of broadcast and reduce (default 0)
  -c, --check N             correctness passes per size; 0 skips (default 1)
  -z, --blocking Z          0 issue n ops then wait (default); 1 await each
                            op; 2 synchronous calls (allReduceSync, ...)
  --algo LIST               comma-separated ring, tree, auto (default
                            ring,tree); pairs a collective lacks are skipped
  --json FILE               write every row, the command lines and the
                            environment as JSON
  --plot FILE.svg           draw busbw and latency against size per algorithm
  --save-crossovers FILE    save measured ring/tree crossovers; run with
                            RINGTREE_CROSSOVERS_FILE=FILE so 'auto' uses them
  --vs mpi                  also run bench/peers/mpi_collectives (Open MPI,
                            best of its tuned algorithms per size) and print
                            ringtree / Open MPI busbw ratios
  --rounds K                with --vs: alternate ringtree's and Open MPI's
                            sweeps K times (shares a noisy machine's load);
                            ratios use per-size medians over rounds (default 1)
  -h, --help                show this help

size = the whole buffer (all ranks' blocks for allgather/reducescatter);
busbw = algbw x 2(n-1)/n (allreduce), (n-1)/n (reducescatter, allgather),
1 (broadcast, reduce, sendrecv); GB = 1e9 bytes.

Exits 0; 1 when any #wrong is non-zero or a rank fails; 2 on a usage error.
`;

/**
 * A byte size with an optional K/M/G suffix (powers of 1024, as nccl-tests).
 * @throws {BenchUsageError} naming `flag` for anything else.
 */
export function parseSize(flag: string, text: string): number {
  const m = /^(\d+)([kKmMgG]?)[bB]?$/.exec(text.trim());
  if (!m) throw new BenchUsageError(`ringtree bench: ${flag} expects a size in bytes (e.g. 8, 64K, 128M), got '${text}'`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const value = Number(m[1]) * unit;
  if (!Number.isSafeInteger(value) || value > 16 * 1024 ** 3) {
    throw new BenchUsageError(`ringtree bench: ${flag} must be at most 16G, got '${text}'`);
  }
  return value;
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new BenchUsageError(`ringtree bench: ${flag} expects an integer in [${min}, ${max}], got '${text}'`);
  }
  return value;
}

function oneOf<T extends string>(flag: string, text: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) {
    throw new BenchUsageError(`ringtree bench: ${flag} expects one of ${allowed.join(', ')}, got '${text}'`);
  }
  return text as T;
}

const PARSE_OPTIONS = {
  nproc: { type: 'string' },
  backend: { type: 'string' },
  minbytes: { type: 'string', short: 'b' },
  maxbytes: { type: 'string', short: 'e' },
  stepfactor: { type: 'string', short: 'f' },
  iters: { type: 'string', short: 'n' },
  warmup_iters: { type: 'string', short: 'w' },
  reps: { type: 'string' },
  datatype: { type: 'string', short: 'd' },
  op: { type: 'string', short: 'o' },
  root: { type: 'string', short: 'r' },
  check: { type: 'string', short: 'c' },
  blocking: { type: 'string', short: 'z' },
  algo: { type: 'string' },
  json: { type: 'string' },
  plot: { type: 'string' },
  'save-crossovers': { type: 'string' },
  vs: { type: 'string' },
  rounds: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** The flag as the user wrote it, for messages: `-b/--minbytes`. */
function flagName(long: string): string {
  const short = (PARSE_OPTIONS as Record<string, { short?: string }>)[long]?.short;
  return short ? `-${short}/--${long}` : `--${long}`;
}

/**
 * Parse `ringtree bench` arguments (after the word `bench`).
 * @returns the options with defaults filled in.
 * @throws {BenchUsageError} for an unknown flag, a missing value or a bad
 *   value; the message names the flag.
 */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const flag = /'([^']+)'/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new BenchUsageError(`ringtree bench: unknown option '${flag ?? '?'}'`);
    throw new BenchUsageError(`ringtree bench: ${flag ? `${flag}: ` : ''}${e.message.split('\n')[0]}`);
  }
  const { values, positionals } = parsed;
  const options: BenchOptions = {
    collectives: ['allreduce'], nproc: 2, backend: 'cpu', minBytes: 8, maxBytes: 64 * 1024 * 1024, stepFactor: 2,
    iters: 0, warmupIters: 3, reps: 5, dtype: 'float32', op: 'sum', root: 0, check: 1, blocking: 0,
    algorithms: ['ring', 'tree'], rounds: 1, help: values.help === true,
  };
  if (positionals.length > 1) throw new BenchUsageError(`ringtree bench: expected at most one collective, got '${positionals.join(' ')}'`);
  if (positionals.length === 1) {
    const names = positionals[0]!.split(',').map((w) => oneOf('collective', w.trim(), [...BENCH_COLLECTIVES, 'all'] as const));
    options.collectives = names.includes('all') ? [...BENCH_COLLECTIVES] : [...new Set(names as BenchCollective[])];
  }
  if (values.nproc !== undefined) {
    options.nproc = parseInteger(flagName('nproc'), values.nproc, 1, 256);
    options.nprocGiven = true;
  }
  if (values.backend !== undefined) options.backend = oneOf(flagName('backend'), values.backend, ['cpu', 'nccl'] as const);
  if (values.minbytes !== undefined) options.minBytes = parseSize(flagName('minbytes'), values.minbytes);
  if (values.maxbytes !== undefined) options.maxBytes = parseSize(flagName('maxbytes'), values.maxbytes);
  if (options.minBytes > options.maxBytes) {
    throw new BenchUsageError(`ringtree bench: -b/--minbytes (${options.minBytes}) is larger than -e/--maxbytes (${options.maxBytes})`);
  }
  if (values.stepfactor !== undefined) options.stepFactor = parseInteger(flagName('stepfactor'), values.stepfactor, 2, 1024);
  if (values.iters !== undefined) options.iters = parseInteger(flagName('iters'), values.iters, 0, 1_000_000);
  if (values.warmup_iters !== undefined) options.warmupIters = parseInteger(flagName('warmup_iters'), values.warmup_iters, 0, 1_000_000);
  if (values.reps !== undefined) options.reps = parseInteger(flagName('reps'), values.reps, 1, 1000);
  if (values.datatype !== undefined) {
    const dtype = DATATYPE_NAMES[values.datatype];
    if (dtype === undefined) {
      throw new BenchUsageError(`ringtree bench: ${flagName('datatype')} expects one of ${Object.keys(DATATYPE_NAMES).join(', ')}, got '${values.datatype}'`);
    }
    options.dtype = dtype;
  }
  if (values.op !== undefined) options.op = oneOf(flagName('op'), values.op, OPS);
  if (values.root !== undefined) options.root = parseInteger(flagName('root'), values.root, 0, options.nproc - 1);
  if (values.check !== undefined) options.check = parseInteger(flagName('check'), values.check, 0, 1000);
  if (values.blocking !== undefined) options.blocking = parseInteger(flagName('blocking'), values.blocking, 0, 2) as BlockingMode;
  if (values.algo !== undefined) {
    const list = values.algo.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (list.length === 0) throw new BenchUsageError(`ringtree bench: --algo expects a comma-separated list of ring, tree, auto, got '${values.algo}'`);
    const algorithms = list.map((a) => oneOf('--algo', a, ['ring', 'tree', 'auto'] as const));
    if (new Set(algorithms).size !== algorithms.length) throw new BenchUsageError(`ringtree bench: --algo lists an algorithm twice: '${values.algo}'`);
    options.algorithms = algorithms;
  }
  for (const [key, field] of [['json', 'jsonFile'], ['plot', 'plotFile'], ['save-crossovers', 'saveCrossoversFile']] as const) {
    const v = values[key];
    if (v === undefined) continue;
    if (v === '' || v.startsWith('-')) throw new BenchUsageError(`ringtree bench: --${key} expects a file name, got '${v}'`);
    options[field] = v;
  }
  if (options.plotFile !== undefined && !options.plotFile.toLowerCase().endsWith('.svg')) {
    throw new BenchUsageError(`ringtree bench: --plot writes SVG; give a file name ending in .svg, got '${options.plotFile}'`);
  }
  if (values.vs !== undefined) options.vs = oneOf('--vs', values.vs, ['mpi'] as const);
  if (values.rounds !== undefined) {
    options.rounds = parseInteger('--rounds', values.rounds, 1, 100);
    if (options.vs === undefined) throw new BenchUsageError('ringtree bench: --rounds alternates ringtree and a peer; it needs --vs mpi');
  }
  return options;
}

/** The sizes (bytes) a sweep visits: minBytes, minBytes*f, ... up to maxBytes. */
export function sweepSizes(minBytes: number, maxBytes: number, stepFactor: number): number[] {
  const sizes: number[] = [];
  for (let s = Math.max(minBytes, 1); s <= maxBytes; s *= stepFactor) sizes.push(s);
  if (minBytes === 0) sizes.unshift(0);
  return sizes;
}
