/**
 * `ringtree bench --vs mpi`: builds and runs bench/peers/mpi_collectives.c
 * under Open MPI, giving it its best shot, and compares busbw.
 *
 * Open MPI's best shot, per collective and size: its default decision and
 * each of the `coll_tuned_*_algorithm` choices in {@link MPI_CONFIGS} (with
 * `coll_tuned_use_dynamic_rules 1`), keeping the best median per size; glibc
 * told to keep freed memory (`GLIBC_TUNABLES`), since Open MPI 4.1 allocates
 * temporaries per call and a first-touch page fault costs ~12 us per 4 KiB
 * here, and its heap on transparent huge pages (`glibc.malloc.hugetlb=1`), as ringtree's
 * arrays are (allocHost); `--allow-run-as-root --oversubscribe` so it runs in containers and
 * with more ranks than cores.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { BenchCollective } from './options.js';
import { median } from './report.js';

/**
 * glibc: never return freed memory to the kernel, never mmap large blocks (so reused buffers stay faulted
 * in), and advise the heap for transparent huge pages (hugetlb=1), as ringtree's engine does with its
 * buffers: Open MPI ran 1.2-2.5x faster with it here (docs/PERFORMANCE.md, "Huge pages").
 */
export const MPI_GLIBC_TUNABLES = 'glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:glibc.malloc.hugetlb=1';

/** The MCA parameter that picks each collective's algorithm in Open MPI 4.1's `tuned` component. */
const MCA_PARAM: Readonly<Record<BenchCollective, string | null>> = {
  allreduce: 'coll_tuned_allreduce_algorithm',
  reducescatter: 'coll_tuned_reduce_scatter_block_algorithm',
  allgather: 'coll_tuned_allgather_algorithm',
  broadcast: 'coll_tuned_bcast_algorithm',
  reduce: 'coll_tuned_reduce_algorithm',
  sendrecv: null,
};

/**
 * The configurations tried per collective: `null` is Open MPI's own decision,
 * numbers are forced tuned algorithms (Open MPI 4.1 numbering; `ompi_info
 * --param coll tuned --level 9` lists them).
 */
export const MPI_CONFIGS: Readonly<Record<BenchCollective, readonly { value: number | null; name: string }[]>> = {
  allreduce: [{ value: null, name: 'default' }, { value: 3, name: 'recursive doubling' }, { value: 4, name: 'ring' }, { value: 5, name: 'segmented ring' }],
  reducescatter: [{ value: null, name: 'default' }, { value: 2, name: 'recursive doubling' }, { value: 3, name: 'recursive halving' }, { value: 4, name: 'butterfly' }],
  allgather: [{ value: null, name: 'default' }, { value: 3, name: 'recursive doubling' }, { value: 4, name: 'ring' }, { value: 6, name: 'two proc' }],
  broadcast: [{ value: null, name: 'default' }, { value: 3, name: 'pipeline' }, { value: 6, name: 'binomial' }, { value: 8, name: 'scatter+allgather' }, { value: 9, name: 'scatter+allgather ring' }],
  reduce: [{ value: null, name: 'default' }, { value: 2, name: 'chain' }, { value: 3, name: 'pipeline' }, { value: 5, name: 'binomial' }],
  sendrecv: [{ value: null, name: 'default' }],
};

/** One parsed peer row (nccl-tests columns). */
export interface PeerRow {
  size: number;
  count: number;
  /** Out-of-place and in-place median time (us) and busbw (GB/s); null where N/A. */
  time: number;
  busbw: number;
  inPlaceTime: number | null;
  inPlaceBusbw: number | null;
  wrong: number;
}

/** Parse the data lines of an nccl-tests-style table (comments skipped). */
export function parsePeerTable(text: string): PeerRow[] {
  const rows: PeerRow[] = [];
  for (const line of text.split('\n')) {
    const t = line.trim().split(/\s+/);
    if (line.startsWith('#') || t.length !== 13 || !/^\d+$/.test(t[0]!)) continue;
    const num = (s: string): number | null => (s === 'N/A' ? null : Number(s));
    rows.push({
      size: Number(t[0]), count: Number(t[1]), time: Number(t[5]), busbw: Number(t[7]),
      inPlaceTime: num(t[9]!), inPlaceBusbw: num(t[11]!), wrong: (num(t[8]!) ?? 0) + (num(t[12]!) ?? 0),
    });
  }
  return rows;
}

/** The best configuration and placement per size. */
export interface PeerBest extends PeerRow {
  /** The configuration that gave it. */
  config: string;
  /** Which placement was faster; `best*` are its numbers. */
  placement: 'out-of-place' | 'in-place';
  bestBusbw: number;
  bestTime: number;
}

/** A row's better placement (Open MPI's out-of-place allreduce copies the input first; in place it does not). */
export function bestPlacement(row: PeerRow): { placement: PeerBest['placement']; busbw: number; time: number } {
  return row.inPlaceBusbw !== null && row.inPlaceBusbw > row.busbw
    ? { placement: 'in-place', busbw: row.inPlaceBusbw, time: row.inPlaceTime! }
    : { placement: 'out-of-place', busbw: row.busbw, time: row.time };
}

/** Where the peer binary and its source live. */
export function peerPaths(packageRoot: string): { source: string; binary: string } {
  return {
    source: path.join(packageRoot, 'bench', 'peers', 'mpi_collectives.c'),
    binary: path.join(packageRoot, 'build', 'bench', 'mpi_collectives'),
  };
}

/**
 * Build the peer with `mpicc` when the binary is missing or older than its
 * source. Throws with the remedy when mpicc or the source is missing.
 */
export function buildPeer(packageRoot: string): string {
  const { source, binary } = peerPaths(packageRoot);
  if (!existsSync(source)) throw new Error(`--vs mpi needs ${source} (a ringtree checkout; the npm package does not ship bench/)`);
  if (existsSync(binary) && statSync(binary).mtimeMs >= statSync(source).mtimeMs) return binary;
  const which = spawnSync('sh', ['-c', 'command -v mpicc && command -v mpirun'], { encoding: 'utf8' });
  if (which.status !== 0) throw new Error('--vs mpi needs Open MPI: mpicc and mpirun on PATH (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev)');
  mkdirSync(path.dirname(binary), { recursive: true });
  const cc = spawnSync('mpicc', ['-O2', '-o', binary, source], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`mpicc failed building the peer:\n${cc.stderr}`);
  return binary;
}

/** One peer run's exact command line, for the record. */
export function peerCommand(binary: string, nproc: number, collective: BenchCollective, config: number | null,
  sweep: { minBytes: number; maxBytes: number; stepFactor: number; iters: number; warmupIters: number; reps: number; root: number }): string[] {
  const mca = config === null || MCA_PARAM[collective] === null ? [] : ['--mca', 'coll_tuned_use_dynamic_rules', '1', '--mca', MCA_PARAM[collective]!, String(config)];
  return ['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', String(nproc), '-x', `GLIBC_TUNABLES=${MPI_GLIBC_TUNABLES}`, ...mca,
    binary, collective, '-b', String(sweep.minBytes), '-e', String(sweep.maxBytes), '-f', String(sweep.stepFactor),
    '-n', String(sweep.iters), '-w', String(sweep.warmupIters), '-R', String(sweep.reps), '-r', String(sweep.root), '-c', '1'];
}

/** One round of the peer for one collective: the best per size, and every configuration and placement measured. */
export interface PeerSweep {
  best: PeerBest[];
  /** Every (configuration, placement) per size, labelled as {@link PeerBest} labels them. */
  candidates: RatioSide[];
}

/**
 * Run every configuration of `collective` and keep the best busbw per size
 * (over configurations and both placements), and every candidate for
 * {@link bestOfMedians}. `onRun` sees each command line and its raw output.
 */
export function runPeerBest(binary: string, nproc: number, collective: BenchCollective,
  sweep: Parameters<typeof peerCommand>[4], onRun: (argv: string[], output: string) => void): PeerSweep {
  const best = new Map<number, PeerBest>();
  const candidates: RatioSide[] = [];
  for (const config of MPI_CONFIGS[collective]) {
    const argv = peerCommand(binary, nproc, collective, config.value, sweep);
    const run = spawnSync(argv[0]!, argv.slice(1), {
      encoding: 'utf8', maxBuffer: 64 << 20, timeout: 900_000,
      env: { ...process.env, GLIBC_TUNABLES: MPI_GLIBC_TUNABLES },
    });
    onRun(argv, `${run.stdout ?? ''}${run.stderr ?? ''}`);
    if (run.status !== 0 && !(run.stdout ?? '').includes('# Out of bounds')) continue; // an algorithm Open MPI refuses here
    for (const row of parsePeerTable(run.stdout ?? '')) {
      candidates.push({ size: row.size, busbw: row.busbw, time: row.time, label: `${config.name}, out-of-place` });
      if (row.inPlaceBusbw !== null) candidates.push({ size: row.size, busbw: row.inPlaceBusbw, time: row.inPlaceTime!, label: `${config.name}, in-place` });
      const prev = best.get(row.size);
      const b = bestPlacement(row);
      if (!prev || b.busbw > prev.bestBusbw) best.set(row.size, { ...row, config: config.name, placement: b.placement, bestBusbw: b.busbw, bestTime: b.time });
    }
  }
  return { best: [...best.values()].sort((a, b) => a.size - b.size), candidates };
}

/** One side of a comparison at one size. */
export interface RatioSide {
  size: number;
  /** GB/s. */
  busbw: number;
  /** us per op. */
  time: number;
  /** What produced it, e.g. `ring, in-place` or `segmented ring, out-of-place`. */
  label: string;
}

/**
 * Per size, the candidate (an algorithm or configuration, and a placement:
 * its `label`) with the best median busbw over rounds: each candidate's
 * median over the rounds that measured it first, then the best of those
 * medians; the time shown is that candidate's median time.
 *
 * Why not the median of each round's best: on a noisy machine the largest
 * of many samples is biased up, and more so the more candidates a side has
 * (Open MPI runs 4-5 configurations per collective, ringtree 1-2
 * algorithms), so each round's best compares one side's luckiest draw with
 * the other's. Medians first treat both sides alike and still pick each
 * side's best configuration.
 */
export function bestOfMedians(rounds: readonly (readonly RatioSide[])[]): RatioSide[] {
  const bySize = new Map<number, Map<string, RatioSide[]>>();
  for (const round of rounds) {
    for (const c of round) {
      let byLabel = bySize.get(c.size);
      if (!byLabel) bySize.set(c.size, (byLabel = new Map()));
      let list = byLabel.get(c.label);
      if (!list) byLabel.set(c.label, (list = []));
      list.push(c);
    }
  }
  const out: RatioSide[] = [];
  for (const [size, byLabel] of bySize) {
    let best: RatioSide | undefined;
    for (const [label, list] of byLabel) {
      const m = { size, label, busbw: median(list.map((c) => c.busbw)), time: median(list.map((c) => c.time)) };
      if (!best || m.busbw > best.busbw) best = m;
    }
    out.push(best!);
  }
  return out.sort((a, b) => a.size - b.size);
}

/** ringtree / peer busbw per size (sizes both have), with the geometric mean and the minimum. */
export function ratios(ours: readonly RatioSide[], peer: readonly RatioSide[]):
  { rows: { size: number; ours: RatioSide; peer: RatioSide; ratio: number }[]; geomean: number; min: number } {
  const rows = [];
  for (const o of ours) {
    const p = peer.find((q) => q.size === o.size);
    if (!p || p.busbw <= 0) continue;
    rows.push({ size: o.size, ours: o, peer: p, ratio: o.busbw / p.busbw });
  }
  const geomean = rows.length ? Math.exp(rows.reduce((s, r) => s + Math.log(r.ratio), 0) / rows.length) : NaN;
  const min = rows.length ? Math.min(...rows.map((r) => r.ratio)) : NaN;
  return { rows, geomean, min };
}
