/**
 * `ringtree bench`: parses the options, launches N ranks of the rank program
 * (dist/bench/rank.js) through {@link launch}, then prints nccl-tests-style
 * tables, the ring/tree comparison and crossover, and writes the JSON, plot
 * and crossover files asked for. `--vs mpi` runs the Open MPI peer after.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../binding.js';
import { requireNccl } from '../device.js';
import { BackendUnavailableError, type RingtreeError } from '../errors.js';
import { launch } from '../launch.js';
import { BENCH_HELP, BenchUsageError, parseBenchArgs, sweepSizes, type BenchCollective, type BenchOptions } from './options.js';
import type { RankPlan, RankResult } from './rank.js';
import {
  COMM_NAMES, findCrossover, footerValues, formatBytes, formatComparison, formatTable, median,
  type BenchJson, type BenchRow, type CrossoverResult, type RowAlgorithm,
} from './report.js';
import { crossoverMarkers, renderPlot, seriesFromRows } from './plot.js';
import { bestOfMedians, buildPeer, MPI_GLIBC_TUNABLES, ratios, runPeerBest, type PeerSweep, type RatioSide } from './mpi.js';

/** Target duration of one timed repetition when `-n` is 0 (auto), ms. */
const TARGET_REP_MS = 20;

/** The saved-crossovers file (`--save-crossovers`), read by 'auto' through RINGTREE_CROSSOVERS_FILE. */
export interface CrossoversFile {
  schema: 'ringtree-crossovers/1';
  /** Per Communicator collective name: crossover points per world size (tree below, ring at and above). */
  crossovers: Record<string, { worldSize: number; crossoverBytes: number; measured: string }[]>;
}

/** Environment recorded in `--json`: what a reader needs to judge the numbers. The rendezvous token is never recorded. */
export function benchEnvironment(): Record<string, unknown> {
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && /^(RINGTREE_|OMPI_|GLIBC_TUNABLES$|OMP_NUM_THREADS$)/.test(k) && k !== 'RINGTREE_TOKEN') vars[k] = v;
  }
  let version = 'unknown';
  try { version = (JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version; } catch { /* keep unknown */ }
  // The engine changes under benchmarks during development: record which source and which addon build ran.
  const git = spawnSync('git', ['-C', packageRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
  const dirty = spawnSync('git', ['-C', packageRoot, 'status', '--porcelain', '--', 'native', 'lib'], { encoding: 'utf8' });
  const addon = [path.join(packageRoot, 'build', 'Release', 'ringtree.node')].find((f) => existsSync(f));
  return {
    gitCommit: git.status === 0 ? git.stdout.trim() : null,
    gitDirty: dirty.status === 0 ? dirty.stdout.trim() !== '' : null,
    addon: addon ? { path: addon, built: statSync(addon).mtime.toISOString() } : null,
    hostname: os.hostname(), platform: process.platform, arch: process.arch, kernel: os.release(),
    cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', memoryBytes: os.totalmem(),
    loadAverage: os.loadavg(), node: process.version, ringtree: version, variables: vars,
  };
}

/** Merge `result`'s crossovers for `worldSize` into the crossovers file at `file` (created when absent). */
export function mergeCrossovers(existing: CrossoversFile | null, worldSize: number, crossovers: Record<string, CrossoverResult>, date: string): CrossoversFile {
  const doc: CrossoversFile = existing ?? { schema: 'ringtree-crossovers/1', crossovers: {} };
  for (const [collective, c] of Object.entries(crossovers)) {
    if (c.bytes === null) continue;
    const name = COMM_NAMES[collective as BenchCollective] ?? collective;
    const points = (doc.crossovers[name] ?? []).filter((p) => p.worldSize !== worldSize);
    points.push({ worldSize, crossoverBytes: c.bytes, measured: date });
    doc.crossovers[name] = points.sort((a, b) => a.worldSize - b.worldSize);
  }
  return doc;
}

/** Progress on stderr, only when it is a terminal: one redrawn line. */
class ProgressBar {
  private readonly enabled = process.stderr.isTTY === true;
  update(done: number, total: number, label: string): void {
    if (!this.enabled) return;
    const width = 30, filled = Math.round((done / Math.max(total, 1)) * width);
    process.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}`.padEnd(80));
  }
  clear(): void {
    if (this.enabled) process.stderr.write(`\r${' '.repeat(80)}\r`);
  }
}

/** Reads the ranks' prefixed stdout: `@progress` lines drive the bar, anything else goes to stderr (stdout stays the tables). */
function rankOutputSink(bar: ProgressBar): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line === '') continue;
        const m = /^\[rank \d+\] @progress (\d+) (\d+) (\S+) (\d+)$/.exec(line);
        if (m) bar.update(Number(m[1]), Number(m[2]), `${m[3]} ${formatBytes(Number(m[4]))}`);
        else process.stderr.write(`${line}\n`);
      }
      done();
    },
  });
}

function groupRows(rows: readonly BenchRow[]): Map<BenchCollective, Map<RowAlgorithm, BenchRow[]>> {
  const by = new Map<BenchCollective, Map<RowAlgorithm, BenchRow[]>>();
  for (const r of rows) {
    let m = by.get(r.collective);
    if (!m) by.set(r.collective, (m = new Map()));
    let list = m.get(r.algorithm);
    if (!list) m.set(r.algorithm, (list = []));
    list.push(r);
  }
  return by;
}

function describeRun(o: BenchOptions, n: number): string {
  return `${n} ranks (${o.backend}), ${o.dtype} ${o.op}, ${o.iters === 0 ? `iters auto (~${TARGET_REP_MS} ms per repetition)` : `${o.iters} iters`}, ` +
    `${o.warmupIters} warm-up, median of ${o.reps} interleaved repetitions, ${['issue n then wait', 'await each op', 'sync calls'][o.blocking]}`;
}

/**
 * Run `ringtree bench` with `argv` (the words after `bench`).
 * @returns the exit code: 0; 1 when #wrong is non-zero, a rank failed or the
 *   backend is unavailable; 2 for a usage error (message on stderr naming the flag).
 */
export async function runBench(argv: string[]): Promise<number> {
  let options: BenchOptions;
  try {
    options = parseBenchArgs(argv);
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`${err.message}\nRun 'ringtree bench --help' for usage.\n`);
      return 2;
    }
    throw err;
  }
  if (options.help) {
    process.stdout.write(BENCH_HELP);
    return 0;
  }
  let ncclNote: string | undefined;
  if (options.backend === 'nccl') {
    if (options.blocking === 2) {
      process.stderr.write(`ringtree bench: -z/--blocking 2 (synchronous calls) has no form on device arrays; use -z 0 or 1 with --backend nccl\nRun 'ringtree bench --help' for usage.\n`);
      return 2;
    }
    if (options.vs) {
      process.stderr.write(`ringtree bench: --vs mpi compares the CPU engine with Open MPI; it has no meaning with --backend nccl\nRun 'ringtree bench --help' for usage.\n`);
      return 2;
    }
    // Fail here, once, naming what is missing, rather than in every rank.
    let gpus = 0;
    try {
      const info = requireNccl('bench').cudaInfo();
      gpus = info.devices.length;
      // Per-collective NCCL_ALGO (allreduce:tree) needs NCCL 2.24; before it 'tree' is refused.
      if ((info.nccl.versionCode ?? 0) < 22400 && options.algorithms.includes('tree')) {
        options.algorithms = options.algorithms.filter((a) => a !== 'tree');
        if (options.algorithms.length === 0) options.algorithms = ['auto'];
        ncclNote = `# 'tree' skipped: NCCL ${info.nccl.version} is older than 2.24, which added per-collective NCCL_ALGO`;
      }
      if (gpus === 0) throw new BackendUnavailableError('the CUDA driver reports no GPU', { op: 'bench', remedy: 'Check nvidia-smi and CUDA_VISIBLE_DEVICES.' });
    } catch (err) {
      const e = err as RingtreeError;
      process.stderr.write(`ringtree bench: ${e.name}: ${e.message}\n`);
      return 1;
    }
    if (!options.nprocGiven) options.nproc = gpus;
  }
  if (options.blocking === 2 && options.collectives.includes('sendrecv')) {
    process.stderr.write(`ringtree bench: -z/--blocking 2 (synchronous calls) has no sendrecv form; use -z 0 or 1\nRun 'ringtree bench --help' for usage.\n`);
    return 2;
  }

  const work = mkdtempSync(path.join(os.tmpdir(), 'ringtree-bench-'));
  try {
    const rankScript = fileURLToPath(new URL('./rank.js', import.meta.url));
    const plan: RankPlan = {
      collectives: options.collectives, sizes: sweepSizes(options.minBytes, options.maxBytes, options.stepFactor),
      dtype: options.dtype, op: options.op, root: options.root, algorithms: options.algorithms, iters: options.iters,
      warmupIters: options.warmupIters, reps: options.reps, check: options.check, blocking: options.blocking,
      targetRepMs: TARGET_REP_MS, resultFile: path.join(work, 'result.json'), backend: options.backend,
    };
    const planFile = path.join(work, 'plan.json');
    writeFileSync(planFile, JSON.stringify(plan));
    const bar = new ProgressBar();
    const rounds = options.vs ? options.rounds : 1;
    const results: RankResult[] = [];
    const peerRounds: Map<BenchCollective, PeerSweep>[] = [];
    const peerCommands: string[] = [];
    const peerRuns: { command: string; output: string }[] = [];
    let peerError: string | undefined;
    for (let round = 0; round < rounds; round++) {
      const launched = await launch({ script: rankScript, args: [planFile], nproc: options.nproc, stdout: rankOutputSink(bar) });
      bar.clear();
      if (!launched.ok || !existsSync(plan.resultFile)) {
        process.stderr.write(`ringtree bench: the ranks failed${launched.summary.length ? `:\n${launched.summary.join('\n')}` : ''}\n`);
        return launched.exitCode || 1;
      }
      const r = JSON.parse(readFileSync(plan.resultFile, 'utf8')) as RankResult;
      rmSync(plan.resultFile);
      if (rounds > 1) for (const row of r.rows) row.round = round;
      results.push(r);
      if (options.vs === 'mpi' && peerError === undefined) {
        try {
          peerRounds.push(runPeers(options, (argv, output) => { peerCommands.push(argv.join(' ')); peerRuns.push({ command: argv.join(' '), output }); }));
        } catch (err) {
          peerError = err instanceof Error ? err.message : String(err);
          process.stderr.write(`ringtree bench: ${peerError}\n`);
        }
      }
    }
    const result: RankResult = { ranks: results[0]!.ranks, rows: results.flatMap((r) => r.rows), skipped: results[0]!.skipped };
    const n = result.ranks;
    const out: string[] = [`# ringtree bench: ${options.collectives.join(', ')} on ${describeRun(options, n)}${rounds > 1 ? `; tables from round 1 of ${rounds}` : ''}`];
    if (ncclNote) out.push(ncclNote);
    for (const s of result.skipped) {
      out.push(options.backend === 'nccl'
        ? `# ${s.collective}: '${s.algorithm}' skipped: NCCL's algorithm option restricts allReduce only; ${COMM_NAMES[s.collective]} runs with ${s.supported.join(', ')}`
        : `# ${s.collective}: '${s.algorithm}' skipped: the CPU engine runs ${COMM_NAMES[s.collective]} with ${s.supported.join(', ')} only`);
    }
    const crossovers: Record<string, CrossoverResult> = {};
    for (const [collective, byAlgorithm] of groupRows(results[0]!.rows)) {
      for (const [algorithm, rows] of byAlgorithm) {
        const resolved = algorithm === 'auto' ? ` (resolved per size: ${[...new Set(rows.map((r) => r.resolved))].join(', ')})` : '';
        out.push('', formatTable(`${collective}, algorithm ${algorithm}${resolved}`, rows));
      }
      if (byAlgorithm.size > 1) out.push('', formatComparison(collective, byAlgorithm));
      const ring = byAlgorithm.get('ring'), tree = byAlgorithm.get('tree');
      if (ring && tree) {
        const c = findCrossover(ring.map((r, i) => ({ size: r.size, ring: r.outOfPlace, tree: tree[i]!.outOfPlace })));
        crossovers[collective] = c;
        out.push(`# ${collective}: tree -> ring crossover: ${c.bytes === null ? c.reason : `${formatBytes(c.bytes)} (${c.reason})`}`);
      }
    }
    const footer = footerValues(result.rows);
    out.push('', `# All tables: Out of bounds values : ${footer.wrong} ${footer.wrong ? 'FAILED' : 'OK'}`);
    process.stdout.write(`${out.join('\n')}\n`);

    const date = new Date().toISOString();
    const benchCommand = [process.execPath, process.argv[1] ?? 'ringtree', 'bench', ...argv];
    const rankCommand = `RANK=r WORLD_SIZE=${n} ${process.execPath} ${rankScript} ${planFile}`;
    let peers: BenchJson['peers'];
    if (options.vs === 'mpi' && peerRounds.length > 0) peers = { ...reportVsMpi(options, results, peerRounds, n), runs: peerRuns };
    const peerFailed = peerError !== undefined;
    if (options.jsonFile) {
      const doc: BenchJson = {
        schema: 'ringtree-bench/1', date, commands: { bench: [benchCommand.join(' ')], ranks: Array.from({ length: rounds }, () => rankCommand), peers: peerCommands },
        environment: benchEnvironment(), backend: options.backend, ranks: n,
        options: { ...options, plan }, rows: result.rows, crossovers,
        out_of_bounds: footer.wrong, average_bus_bandwidth: footer.avgBusBw, ...(peers ? { peers } : {}),
      };
      writeFileSync(options.jsonFile, `${JSON.stringify(doc, null, 2)}\n`);
      process.stderr.write(`ringtree bench: wrote ${options.jsonFile}\n`);
    }
    if (options.plotFile) {
      const several = options.collectives.length > 1;
      const title = `ringtree bench: ${options.collectives.join(', ')}, ${n} ranks, ${options.dtype} ${options.op}`;
      writeFileSync(options.plotFile, renderPlot(title, seriesFromRows(results[0]!.rows, several), crossoverMarkers(crossovers, several)));
      process.stderr.write(`ringtree bench: wrote ${options.plotFile}\n`);
    }
    if (options.saveCrossoversFile) {
      let existing: CrossoversFile | null = null;
      try { existing = JSON.parse(readFileSync(options.saveCrossoversFile, 'utf8')) as CrossoversFile; } catch { existing = null; }
      const doc = mergeCrossovers(existing?.schema === 'ringtree-crossovers/1' ? existing : null, n, crossovers, date);
      writeFileSync(options.saveCrossoversFile, `${JSON.stringify(doc, null, 2)}\n`);
      const saved = Object.entries(crossovers).filter(([, c]) => c.bytes !== null).map(([k]) => k);
      process.stderr.write(`ringtree bench: ${saved.length ? `saved crossovers for ${saved.join(', ')}` : 'no crossover measured, nothing new saved'} in ${options.saveCrossoversFile}; ` +
        `run with RINGTREE_CROSSOVERS_FILE=${path.resolve(options.saveCrossoversFile)} so algorithm 'auto' uses them\n`);
    }
    if (footer.wrong > 0) return 1;
    return peerFailed ? 1 : 0;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** One round of `--vs mpi`: Open MPI's best configuration per size, for each collective. */
function runPeers(options: BenchOptions, onRun: (argv: string[], output: string) => void): Map<BenchCollective, PeerSweep> {
  const binary = buildPeer(packageRoot);
  const sweep = { minBytes: options.minBytes, maxBytes: options.maxBytes, stepFactor: options.stepFactor, iters: options.iters,
    warmupIters: options.warmupIters, reps: options.reps, root: options.root };
  const out = new Map<BenchCollective, PeerSweep>();
  for (const collective of options.collectives) out.set(collective, runPeerBest(binary, options.nproc, collective, sweep, onRun));
  return out;
}

/** Per size: the median over rounds of each round's value. */
function medianOverRounds<T extends { size: number }>(rounds: readonly (readonly T[])[], value: (t: T) => number): Map<number, { value: number; picks: T[] }> {
  const by = new Map<number, T[]>();
  for (const r of rounds) for (const t of r) { let l = by.get(t.size); if (!l) by.set(t.size, (l = [])); l.push(t); }
  const out = new Map<number, { value: number; picks: T[] }>();
  for (const [size, list] of by) out.set(size, { value: median(list.map(value)), picks: list });
  return out;
}

/**
 * Print the ringtree / Open MPI ratio tables; return what `--json` records.
 * Each side's figure per size is its best candidate (algorithm or
 * configuration, and placement) by median over rounds ({@link bestOfMedians});
 * a footer line gives the older statistic, the median over rounds of each
 * round's best, which favours the side with more candidates.
 */
function reportVsMpi(options: BenchOptions, results: readonly RankResult[], peerRounds: readonly Map<BenchCollective, PeerSweep>[], n: number): Record<string, unknown> {
  const report: Record<string, unknown> = {
    peer: 'Open MPI (bench/peers/mpi_collectives.c)', glibcTunables: MPI_GLIBC_TUNABLES, rounds: results.length,
    statistic: 'per size, each side\'s candidate (algorithm or configuration, and placement) with the best median busbw over rounds',
  };
  const lines: string[] = [];
  const mostCommon = (names: string[]): string => {
    const counts = new Map<string, number>();
    for (const x of names) counts.set(x, (counts.get(x) ?? 0) + 1);
    return [...counts.entries()].sort((a, b) => b[1] - a[1])[0]![0];
  };
  const bestPerRound = (round: readonly RatioSide[]): RatioSide[] => {
    const best = new Map<number, RatioSide>();
    for (const c of round) { const prev = best.get(c.size); if (!prev || c.busbw > prev.busbw) best.set(c.size, c); }
    return [...best.values()];
  };
  const medianOfBests = (rounds: RatioSide[][]): RatioSide[] => [...medianOverRounds(rounds.map(bestPerRound), (t) => t.busbw).entries()]
    .sort((a, b) => a[0] - b[0]).map(([size, v]) => ({ size, busbw: v.value, time: median(v.picks.map((p) => p.time)), label: mostCommon(v.picks.map((p) => p.label)) }));
  for (const collective of options.collectives) {
    // Every algorithm and placement ringtree measured, per round.
    const oursRounds = results.map((res) => res.rows.filter((r) => r.collective === collective).flatMap((r) =>
      ([[r.outOfPlace, 'out-of-place'], [r.inPlace, 'in-place']] as const).flatMap(([m, placement]) =>
        m ? [{ size: r.size, busbw: m.busbw, time: m.time, label: `${r.algorithm}, ${placement}` }] : [])));
    const peerRoundsOf = peerRounds.map((m) => m.get(collective)?.candidates ?? []);
    const cmp = ratios(bestOfMedians(oursRounds), bestOfMedians(peerRoundsOf));
    const older = ratios(medianOfBests(oursRounds), medianOfBests(peerRoundsOf));
    lines.push('', `# ${collective}: ringtree / Open MPI, ${n} ranks: each side's best algorithm (configuration) and placement per size` +
      `${results.length > 1 ? ` by its median over ${results.length} alternating rounds` : ''}`,
      '#       size   ringtree busbw   time(us)  (algorithm, placement)           Open MPI busbw   time(us)  (configuration, placement)            ratio');
    for (const r of cmp.rows) {
      lines.push(`${String(r.size).padStart(12)}  ${r.ours.busbw.toFixed(3).padStart(14)}  ${r.ours.time.toFixed(1).padStart(9)}  ${`(${r.ours.label})`.padEnd(32)}  ` +
        `${r.peer.busbw.toFixed(3).padStart(14)}  ${r.peer.time.toFixed(1).padStart(9)}  ${`(${r.peer.label})`.padEnd(36)}  ${r.ratio.toFixed(2).padStart(6)}`);
    }
    lines.push(`# ${collective}: geometric mean ${cmp.geomean.toFixed(2)}, minimum ${cmp.min.toFixed(2)}`);
    if (results.length > 1) {
      lines.push(`# ${collective}: against the median of each round's best instead: geometric mean ${older.geomean.toFixed(2)}, minimum ${older.min.toFixed(2)}` +
        ` (${older.rows.map((r) => r.ratio.toFixed(2)).join(' ')})`);
    }
    const peerWrong = peerRounds.reduce((s, m) => s + (m.get(collective)?.best ?? []).reduce((t, p) => t + p.wrong, 0), 0);
    if (peerWrong) lines.push(`# ${collective}: Open MPI rows had ${peerWrong} wrong elements`);
    report[collective] = { bestPerRound: peerRounds.map((m) => m.get(collective)?.best ?? []), ratios: cmp, ratiosOfRoundBests: older };
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return report;
}
