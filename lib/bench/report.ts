/**
 * `ringtree bench` results: nccl-tests' geometry and bandwidth formulas, the
 * tables, the ring/tree comparison and crossover, and the JSON document.
 *
 * Pure: the rank program measures, the CLI prints what these functions return.
 *
 * @module
 */
import type { BenchCollective } from './options.js';

/** The algorithm a row was measured with (`p2p` for sendrecv, which has none). */
export type RowAlgorithm = 'ring' | 'tree' | 'auto' | 'p2p';

/**
 * busbw = algbw × this factor (nccl-tests' doc/PERFORMANCE.md): the fraction
 * of the buffer each rank must move over its busiest link whatever the
 * algorithm, so busbw is comparable to a link's bandwidth at any rank count.
 * allreduce 2(n-1)/n; reducescatter and allgather (n-1)/n; broadcast, reduce
 * and sendrecv 1. A single rank moves nothing: 1 for all.
 */
export function busBwFactor(collective: BenchCollective, ranks: number): number {
  if (ranks <= 1) return 1;
  switch (collective) {
    case 'allreduce': return (2 * (ranks - 1)) / ranks;
    case 'reducescatter':
    case 'allgather': return (ranks - 1) / ranks;
    case 'broadcast':
    case 'reduce':
    case 'sendrecv': return 1;
  }
}

/** One row's buffer geometry, as nccl-tests computes it. */
export interface RowGeometry {
  /** The `size` column: the whole buffer in bytes (for allgather the output, for reducescatter the input). */
  size: number;
  /** The `count` column: NCCL's `count` argument (per-rank block for allgather/reducescatter). */
  count: number;
}

/**
 * The size and count of a row asked for as `bytes` on `ranks` ranks with
 * `typeSize`-byte elements: rounded down to whole elements (and, for
 * allgather/reducescatter, to whole per-rank blocks).
 */
export function rowGeometry(collective: BenchCollective, bytes: number, ranks: number, typeSize: number): RowGeometry {
  if (collective === 'allgather' || collective === 'reducescatter') {
    const count = Math.floor(bytes / (ranks * typeSize));
    return { size: count * ranks * typeSize, count };
  }
  const count = Math.floor(bytes / typeSize);
  return { size: count * typeSize, count };
}

/** algbw in GB/s (1e9 bytes) of `size` bytes in `timeUs` microseconds. */
export function algBw(size: number, timeUs: number): number {
  return timeUs > 0 ? size / 1e3 / timeUs : 0;
}

/** The median of `values` (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * The quartiles of `values` (linear interpolation between order statistics):
 * the spread a median is reported with. With one value both are that value.
 */
export function quartiles(values: readonly number[]): { q25: number; q75: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (p: number): number => {
    if (s.length === 0) return NaN;
    const x = p * (s.length - 1);
    const lo = Math.floor(x), hi = Math.ceil(x);
    return s[lo]! + (s[hi]! - s[lo]!) * (x - lo);
  };
  return { q25: at(0.25), q75: at(0.75) };
}

/** One placement (out-of-place or in-place) of one row. */
export interface Measurement {
  /** Median time per op over the repetitions, microseconds (each repetition's time is the mean over ranks). */
  time: number;
  /** Per-repetition times per op, microseconds. */
  samples: number[];
  /** Quartiles of `samples`. */
  q25: number;
  q75: number;
  /** GB/s from the median time. */
  algbw: number;
  busbw: number;
  /** Wrong elements summed over ranks, or null when not checked (`-c 0`). */
  wrong: number | null;
  /**
   * CPU time (all threads of a rank) over wall time during the timed
   * repetitions, mean over ranks: 1 is one core kept busy per rank. Ranks
   * that spin while waiting show about 1 or more even when more ranks than
   * cores share the machine.
   */
  cpuBusy?: number;
}

/** One row of a table: one size, one algorithm. */
export interface BenchRow {
  collective: BenchCollective;
  algorithm: RowAlgorithm;
  /** What `'auto'` ran at this size, as the engine's stats() counted it (only for algorithm 'auto'). */
  resolved?: string;
  size: number;
  count: number;
  /** nccl-tests' type name: float, double, half, ... */
  type: string;
  /** Reduction, or `none` for allgather, broadcast and sendrecv. */
  redop: string;
  /** Root, or -1 for rootless collectives. */
  root: number;
  /** Ops per timed repetition. */
  iters: number;
  /** Which `--rounds` round measured it (0-based; absent with one round). */
  round?: number;
  outOfPlace: Measurement;
  /** null where NCCL defines no in-place form (sendrecv). */
  inPlace: Measurement | null;
}

/** Build a {@link Measurement} from per-repetition times (us per op). */
export function measurement(samples: readonly number[], size: number, factor: number, wrong: number | null): Measurement {
  const time = median(samples);
  const { q25, q75 } = quartiles(samples);
  const algbw = algBw(size, time);
  return { time, samples: [...samples], q25, q75, algbw, busbw: algbw * factor, wrong };
}

/** nccl-tests' two header lines and the placement ruler. */
export function tableHeader(): string {
  return [
    '#                                                              out-of-place                       in-place',
    '#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong',
    '#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)',
  ].join('\n');
}

function formatTime(us: number): string {
  if (!Number.isFinite(us)) return 'N/A';
  return us >= 1e5 ? us.toFixed(0) : us >= 10 ? us.toFixed(1) : us.toFixed(2);
}

function formatPlacement(m: Measurement | null): string {
  if (m === null) return `${'N/A'.padStart(8)} ${'N/A'.padStart(7)} ${'N/A'.padStart(7)} ${'N/A'.padStart(7)}`;
  return `${formatTime(m.time).padStart(8)} ${m.algbw.toFixed(2).padStart(7)} ${m.busbw.toFixed(2).padStart(7)} ${(m.wrong === null ? 'N/A' : String(m.wrong)).padStart(7)}`;
}

/** One table line in nccl-tests' column layout. */
export function formatRow(row: BenchRow): string {
  return `${String(row.size).padStart(12)}  ${String(row.count).padStart(12)}  ${row.type.padStart(8)}  ${row.redop.padStart(6)}  ${String(row.root).padStart(6)} ` +
    `${formatPlacement(row.outOfPlace)} ${formatPlacement(row.inPlace)}`;
}

/** The footer values: wrong elements over every row and the average busbw over every row and placement. */
export function footerValues(rows: readonly BenchRow[]): { wrong: number; avgBusBw: number } {
  let wrong = 0, sum = 0, n = 0;
  for (const r of rows) {
    for (const m of [r.outOfPlace, r.inPlace]) {
      if (!m) continue;
      wrong += m.wrong ?? 0;
      sum += m.busbw;
      n++;
    }
  }
  return { wrong, avgBusBw: n ? sum / n : 0 };
}

/** nccl-tests' footer: `# Out of bounds values : N OK|FAILED` and `# Avg bus bandwidth    : X`. */
export function formatFooter(rows: readonly BenchRow[]): string {
  const { wrong, avgBusBw } = footerValues(rows);
  return `# Out of bounds values : ${wrong} ${wrong ? 'FAILED' : 'OK'}\n# Avg bus bandwidth    : ${avgBusBw.toFixed(3)}`;
}

/** A whole table for one collective and algorithm: title, header, rows, footer. */
export function formatTable(title: string, rows: readonly BenchRow[]): string {
  return [`# ${title}`, tableHeader(), ...rows.map(formatRow), formatFooter(rows)].join('\n');
}

// ---------------------------------------------------------------- comparison

/** A time with its spread, as the crossover detection reads it. */
export interface TimedPoint {
  /** Median time, us. */
  time: number;
  /** Lower and upper quartile of the repetitions, us. */
  q25: number;
  q75: number;
}

/** Which algorithm wins at one size, and whether the medians separate beyond their spreads. */
export type Verdict = 'tree' | 'ring' | 'tie';

/**
 * 'tree' when tree's whole interquartile range lies below ring's, 'ring' when
 * the reverse, 'tie' when the ranges overlap (the medians do not separate
 * beyond their spread).
 */
export function verdict(ring: TimedPoint, tree: TimedPoint): Verdict {
  if (tree.q75 < ring.q25) return 'tree';
  if (ring.q75 < tree.q25) return 'ring';
  return 'tie';
}

/** Where tree stops beating ring. */
export interface CrossoverResult {
  /** Bytes: tree wins below, ring at and above (as {@link autoAlgorithm} reads a crossover); null when there is none. */
  bytes: number | null;
  /** Why: the sizes that decided it, or why there is none. */
  reason: string;
}

/**
 * The crossover size where tree stops beating ring. L is the largest size
 * where tree wins clearly (see {@link verdict}); the crossover is the first
 * size above L where ring wins clearly (sizes between them tie). "None" when
 * tree never wins clearly or ring never wins clearly above L. Clear ring wins
 * below L are named in the reason (noise, or ring also winning at the
 * smallest sizes). `points` must be in ascending size order.
 */
export function findCrossover(points: readonly { size: number; ring: TimedPoint; tree: TimedPoint }[]): CrossoverResult {
  const verdicts = points.map((p) => verdict(p.ring, p.tree));
  const lastTree = verdicts.lastIndexOf('tree');
  if (lastTree < 0) {
    return { bytes: null, reason: verdicts.includes('ring') ? 'none: tree never beats ring beyond the spread' : 'none: ring and tree do not separate beyond their spread at any size' };
  }
  const firstRingAfter = verdicts.findIndex((v, i) => i > lastTree && v === 'ring');
  if (firstRingAfter < 0) return { bytes: null, reason: `none: ring never beats tree beyond the spread above ${formatBytes(points[lastTree]!.size)} (the last clear tree win)` };
  const size = points[firstRingAfter]!.size;
  const earlierRing = points.filter((_, i) => i < lastTree && verdicts[i] === 'ring').map((p) => formatBytes(p.size));
  return {
    bytes: size,
    reason: `tree wins clearly up to ${formatBytes(points[lastTree]!.size)}, ring from ${formatBytes(size)}` +
      (earlierRing.length ? `; ring also wins clearly at ${earlierRing.join(', ')}` : ''),
  };
}

/** 1536 -> "1.5 KiB", 8 -> "8 B". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = bytes, u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/**
 * The comparison table: per size, each algorithm's out-of-place median time,
 * the winner, and its speedup over the runner-up (marked `~` where the
 * medians do not separate beyond their spread).
 */
export function formatComparison(collective: BenchCollective, byAlgorithm: ReadonlyMap<RowAlgorithm, readonly BenchRow[]>): string {
  const algorithms = [...byAlgorithm.keys()];
  const first = byAlgorithm.get(algorithms[0]!) ?? [];
  const lines = [`# ${collective}: comparison (out-of-place median time, us; ~ = within the spread)`,
    `#       size  ${algorithms.map((a) => a.padStart(10)).join(' ')}   winner  speedup`];
  for (let i = 0; i < first.length; i++) {
    const cells = algorithms.map((a) => byAlgorithm.get(a)![i]!.outOfPlace);
    const order = cells.map((m, k) => ({ m, k })).sort((x, y) => x.m.time - y.m.time);
    const best = order[0]!, second = order[1];
    const clear = second === undefined || best.m.q75 < second.m.q25;
    const speedup = second ? second.m.time / best.m.time : 1;
    lines.push(`${String(first[i]!.size).padStart(12)}  ${cells.map((m) => formatTime(m.time).padStart(10)).join(' ')}  ${algorithms[best.k]!.padStart(7)}  ${clear ? ' ' : '~'}${speedup.toFixed(2)}x`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- JSON

/** The `--json` document. */
export interface BenchJson {
  /** Schema name and version, so readers can check what they parse. */
  schema: 'ringtree-bench/1';
  /** ISO time the run finished. */
  date: string;
  /** The exact command lines: the `ringtree bench` invocation and each launched rank program. */
  commands: { bench: string[]; ranks: string[]; peers: string[] };
  /** Environment: host, Node, CPU, ringtree and the RINGTREE_/OMPI_ variables in force. */
  environment: Record<string, unknown>;
  backend: 'cpu' | 'nccl';
  ranks: number;
  options: Record<string, unknown>;
  /** Every row of every table. */
  rows: BenchRow[];
  /** Per collective with ring and tree: the crossover. */
  crossovers: Record<string, CrossoverResult>;
  /** nccl-tests' footer values over all rows. */
  out_of_bounds: number;
  average_bus_bandwidth: number;
  /** Peer rows and ratios when `--vs mpi` ran. */
  peers?: unknown;
}

/**
 * Check that `value` has the shape of a {@link BenchJson} document; returns
 * the problems found (empty when it conforms).
 */
export function validateBenchJson(value: unknown): string[] {
  const problems: string[] = [];
  const doc = value as Partial<BenchJson> | null;
  if (typeof doc !== 'object' || doc === null) return ['not an object'];
  if (doc.schema !== 'ringtree-bench/1') problems.push(`schema is ${JSON.stringify(doc.schema)}`);
  if (typeof doc.date !== 'string' || Number.isNaN(Date.parse(doc.date))) problems.push('date is not an ISO time');
  if (!doc.commands || !Array.isArray(doc.commands.bench) || !Array.isArray(doc.commands.ranks) || doc.commands.ranks.length === 0) problems.push('commands.bench/ranks missing');
  if (typeof doc.environment !== 'object' || doc.environment === null) problems.push('environment missing');
  if (!Number.isInteger(doc.ranks) || (doc.ranks as number) < 1) problems.push('ranks is not a positive integer');
  if (!Array.isArray(doc.rows) || doc.rows.length === 0) problems.push('rows missing or empty');
  for (const [i, r] of (Array.isArray(doc.rows) ? doc.rows : []).entries()) {
    for (const key of ['size', 'count', 'root', 'iters'] as const) if (!Number.isInteger(r[key])) problems.push(`rows[${i}].${key} is not an integer`);
    for (const key of ['collective', 'algorithm', 'type', 'redop'] as const) if (typeof r[key] !== 'string') problems.push(`rows[${i}].${key} is not a string`);
    for (const [name, m] of [['outOfPlace', r.outOfPlace], ['inPlace', r.inPlace]] as const) {
      if (m === null && name === 'inPlace') continue;
      if (!m || typeof m.time !== 'number' || typeof m.algbw !== 'number' || typeof m.busbw !== 'number' || !Array.isArray(m.samples) || !(m.wrong === null || Number.isInteger(m.wrong))) {
        problems.push(`rows[${i}].${name} is not a measurement`);
      }
    }
  }
  if (typeof doc.crossovers !== 'object' || doc.crossovers === null) problems.push('crossovers missing');
  if (!Number.isInteger(doc.out_of_bounds)) problems.push('out_of_bounds is not an integer');
  if (typeof doc.average_bus_bandwidth !== 'number') problems.push('average_bus_bandwidth is not a number');
  return problems;
}

/** Collective names of the bench, to the Communicator's names used by the crossover table. */
export const COMM_NAMES: Readonly<Record<BenchCollective, string>> = Object.freeze({
  allreduce: 'allReduce', reducescatter: 'reduceScatter', allgather: 'allGather',
  broadcast: 'broadcast', reduce: 'reduce', sendrecv: 'sendRecv',
});
