// `ringtree bench`: option parsing, nccl-tests' busbw formulas and geometry,
// crossover detection on synthetic medians, the JSON schema, the SVG plot,
// the saved-crossovers file 'auto' reads, the Open MPI table parser, and
// real runs over 2 ranks (#wrong 0; an injected wrong value exits 1).
// No assertion here is about speed.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BenchUsageError, parseBenchArgs, parseSize, sweepSizes, BENCH_COLLECTIVES } from '../lib/bench/options.js';
import {
  busBwFactor, findCrossover, formatRow, measurement, quartiles, median, rowGeometry, validateBenchJson, verdict,
  type BenchJson, type BenchRow, type TimedPoint,
} from '../lib/bench/report.js';
import { crossoverMarkers, renderPlot, seriesFromRows } from '../lib/bench/plot.js';
import { mergeCrossovers } from '../lib/bench/cli.js';
import { algorithmsFor, expectedValue, inputValue } from '../lib/bench/rank.js';
import { bestOfMedians, bestPlacement, parsePeerTable, peerCommand, ratios } from '../lib/bench/mpi.js';
import { autoAlgorithm, crossoverBytes, loadCrossoversFile } from '../lib/algorithmSelection.js';
import { buildCli, runCli } from './fixtures/launch/cli.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'ringtree-bench-test-'));

describe('bench options', () => {
  it('defaults to CPU allreduce, 2 ranks, ring and tree, 8 B to 64 MiB', () => {
    const o = parseBenchArgs([]);
    expect(o).toMatchObject({
      collectives: ['allreduce'], nproc: 2, backend: 'cpu', minBytes: 8, maxBytes: 64 * 1024 * 1024, stepFactor: 2,
      iters: 0, warmupIters: 3, reps: 5, dtype: 'float32', op: 'sum', root: 0, check: 1, blocking: 0, algorithms: ['ring', 'tree'], help: false,
    });
    expect(o.jsonFile).toBeUndefined();
  });

  it('parses every option, short and long, as nccl-tests names them', () => {
    const o = parseBenchArgs(['reducescatter', '--nproc', '4', '--backend', 'nccl', '-b', '1K', '-e', '2M', '-f', '4', '-n', '7', '-w', '2',
      '--reps', '3', '-d', 'half', '-o', 'max', '-r', '3', '-c', '2', '-z', '1', '--algo', 'tree,auto', '--json', 'a.json', '--plot', 'p.svg',
      '--save-crossovers', 'x.json', '--vs', 'mpi', '--rounds', '3']);
    expect(o).toMatchObject({
      collectives: ['reducescatter'], nproc: 4, backend: 'nccl', minBytes: 1024, maxBytes: 2 * 1024 * 1024, stepFactor: 4, iters: 7,
      warmupIters: 2, reps: 3, dtype: 'float16', op: 'max', root: 3, check: 2, blocking: 1, algorithms: ['tree', 'auto'],
      jsonFile: 'a.json', plotFile: 'p.svg', saveCrossoversFile: 'x.json', vs: 'mpi', rounds: 3,
    });
    const long = parseBenchArgs(['--minbytes', '8', '--maxbytes', '1G', '--stepfactor', '2', '--iters', '1', '--warmup_iters', '0',
      '--datatype', 'bfloat16', '--op', 'avg', '--root', '1', '--check', '0', '--blocking', '2', '-h']);
    expect(long).toMatchObject({ maxBytes: 1024 ** 3, iters: 1, warmupIters: 0, dtype: 'bfloat16', op: 'avg', root: 1, check: 0, blocking: 2, help: true });
    expect(parseBenchArgs(['all']).collectives).toEqual([...BENCH_COLLECTIVES]);
    expect(parseBenchArgs(['allgather,broadcast']).collectives).toEqual(['allgather', 'broadcast']);
    for (const [name, dtype] of [['float', 'float32'], ['double', 'float64'], ['int8', 'int8'], ['uint8', 'uint8'], ['int32', 'int32'], ['int64', 'int64']]) {
      expect(parseBenchArgs(['-d', name!]).dtype).toBe(dtype);
    }
  });

  it.each([
    [['-b', 'lots'], '-b/--minbytes'],
    [['-e', '8X'], '-e/--maxbytes'],
    [['-b', '2K', '-e', '1K'], '-b/--minbytes'],
    [['-f', '1'], '-f/--stepfactor'],
    [['-n', '-3'], '-n'],
    [['-n', 'x'], '-n/--iters'],
    [['-w', '1.5'], '-w/--warmup_iters'],
    [['--reps', '0'], '--reps'],
    [['-d', 'float8'], '-d/--datatype'],
    [['-o', 'mulsum'], '-o/--op'],
    [['-r', '2'], '-r/--root'],
    [['-c', 'yes'], '-c/--check'],
    [['-z', '3'], '-z/--blocking'],
    [['--algo', 'ring,bcube'], '--algo'],
    [['--algo', 'ring,ring'], '--algo'],
    [['--nproc', '0'], '--nproc'],
    [['--backend', 'gloo'], '--backend'],
    [['--plot', 'plot.png'], '--plot'],
    [['--vs', 'gloo'], '--vs'],
    [['--rounds', '2'], '--rounds'],
    [['--vs', 'mpi', '--rounds', '0'], '--rounds'],
    [['--json'], '--json'],
    [['--frobnicate'], '--frobnicate'],
    [['alltoall'], 'collective'],
    [['allreduce,alltoall'], 'collective'],
  ])('rejects %j naming %s', (argv, flag) => {
    let error: unknown;
    try { parseBenchArgs(argv); } catch (e) { error = e; }
    expect(error).toBeInstanceOf(BenchUsageError);
    expect((error as Error).message).toContain(flag);
  });

  it('reads K/M/G sizes as powers of 1024 and sweeps by the step factor', () => {
    expect(parseSize('-b', '64K')).toBe(65536);
    expect(parseSize('-b', '3M')).toBe(3 * 1024 * 1024);
    expect(parseSize('-b', '1g')).toBe(1024 ** 3);
    expect(sweepSizes(8, 64, 2)).toEqual([8, 16, 32, 64]);
    expect(sweepSizes(1, 100, 10)).toEqual([1, 10, 100]);
    expect(sweepSizes(0, 4, 2)).toEqual([0, 1, 2, 4]);
  });
});

describe('bench formulas (nccl-tests doc/PERFORMANCE.md)', () => {
  it('busbw factor per collective', () => {
    for (const n of [2, 3, 4, 8]) {
      expect(busBwFactor('allreduce', n)).toBeCloseTo((2 * (n - 1)) / n, 12);
      expect(busBwFactor('reducescatter', n)).toBeCloseTo((n - 1) / n, 12);
      expect(busBwFactor('allgather', n)).toBeCloseTo((n - 1) / n, 12);
      expect(busBwFactor('broadcast', n)).toBe(1);
      expect(busBwFactor('reduce', n)).toBe(1);
      expect(busBwFactor('sendrecv', n)).toBe(1);
    }
    expect(busBwFactor('allreduce', 1)).toBe(1);
  });

  it('size is the whole buffer; count is per rank for allgather and reducescatter', () => {
    expect(rowGeometry('allreduce', 1024, 4, 4)).toEqual({ size: 1024, count: 256 });
    expect(rowGeometry('allgather', 1024, 3, 4)).toEqual({ size: 1020, count: 85 });
    expect(rowGeometry('reducescatter', 1024, 4, 2)).toEqual({ size: 1024, count: 128 });
    expect(rowGeometry('broadcast', 7, 2, 4)).toEqual({ size: 4, count: 1 });
  });

  it('algbw = size / time with GB = 1e9, busbw = algbw x factor, time = median, spread = quartiles', () => {
    const m = measurement([100, 300, 200, 1000, 150], 1e6, 1.5, 0);
    expect(m.time).toBe(200);
    expect(m.algbw).toBeCloseTo(5, 12); // 1e6 B / 200 us = 5 GB/s
    expect(m.busbw).toBeCloseTo(7.5, 12);
    expect(quartiles([1, 2, 3, 4, 5])).toEqual({ q25: 2, q75: 4 });
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('prints nccl-tests columns, N/A for sendrecv in place and unchecked rows', () => {
    const row = synthRow('sendrecv', 'p2p', 1024, 10, null);
    row.outOfPlace.wrong = null;
    const cols = formatRow(row).trim().split(/\s+/);
    expect(cols).toHaveLength(13);
    expect(cols.slice(0, 5)).toEqual(['1024', '256', 'float', 'none', '-1']);
    expect(cols[8]).toBe('N/A');
    expect(cols.slice(9)).toEqual(['N/A', 'N/A', 'N/A', 'N/A']);
  });

  it('check inputs have exact results in every dtype', () => {
    expect(expectedValue('sum', 4, 0, false)).toBe(1 + 2 + 3 + 1);
    expect(expectedValue('prod', 3, 1, false)).toBe(2 * 1 * 2);
    expect(expectedValue('avg', 3, 0, true)).toBe(Math.trunc((1 + 2 + 3) / 3));
    expect(expectedValue('max', 2, 2, false)).toBe(Math.max(inputValue('max', 0, 2), inputValue('max', 1, 2)));
  });

  it('runs only the algorithm pairs the engine has; sendrecv as p2p', () => {
    expect(algorithmsFor('allreduce', ['ring', 'tree', 'auto'])).toEqual({ run: ['ring', 'tree', 'auto'], skipped: [] });
    expect(algorithmsFor('allgather', ['ring', 'tree'])).toEqual({ run: ['ring'], skipped: ['tree'] });
    expect(algorithmsFor('sendrecv', ['ring'])).toEqual({ run: ['p2p'], skipped: [] });
  });
});

function point(time: number, halfSpread: number): TimedPoint {
  return { time, q25: time - halfSpread, q75: time + halfSpread };
}

describe('crossover detection', () => {
  it('verdict needs separated quartile ranges', () => {
    expect(verdict(point(100, 5), point(80, 5))).toBe('tree');
    expect(verdict(point(80, 5), point(100, 5))).toBe('ring');
    expect(verdict(point(100, 15), point(80, 15))).toBe('tie');
  });

  it('finds where tree stops beating ring', () => {
    const pts = [
      { size: 8, ring: point(30, 1), tree: point(20, 1) },
      { size: 64, ring: point(32, 1), tree: point(22, 1) },
      { size: 512, ring: point(40, 5), tree: point(38, 5) },
      { size: 4096, ring: point(60, 1), tree: point(90, 1) },
      { size: 32768, ring: point(200, 1), tree: point(400, 1) },
    ];
    const c = findCrossover(pts);
    expect(c.bytes).toBe(4096);
    expect(c.reason).toContain('64 B');
  });

  it('reports none when the medians do not separate beyond their spread', () => {
    const pts = [8, 64, 512].map((size, i) => ({ size, ring: point(30 + i, 20), tree: point(25 + i, 20) }));
    const c = findCrossover(pts);
    expect(c.bytes).toBeNull();
    expect(c.reason).toMatch(/^none/);
    expect(c.reason).toContain('spread');
  });

  it('reports none when tree never wins, or ring never wins after tree', () => {
    expect(findCrossover([{ size: 8, ring: point(10, 1), tree: point(20, 1) }]).bytes).toBeNull();
    const treeAll = findCrossover([{ size: 8, ring: point(30, 1), tree: point(10, 1) }, { size: 64, ring: point(30, 10), tree: point(25, 10) }]);
    expect(treeAll.bytes).toBeNull();
    expect(treeAll.reason).toMatch(/^none: ring never beats tree/);
  });
});

function synthRow(collective: BenchRow['collective'], algorithm: BenchRow['algorithm'], size: number, time: number, inPlace: number | null): BenchRow {
  return {
    collective, algorithm, size, count: size / 4, type: 'float', redop: collective === 'sendrecv' ? 'none' : 'sum', root: -1, iters: 10,
    outOfPlace: measurement([time, time * 1.01, time * 0.99], size, busBwFactor(collective, 2), 0),
    inPlace: inPlace === null ? null : measurement([inPlace], size, busBwFactor(collective, 2), 0),
  };
}

/** A rough XML well-formedness check: every tag closes in order, attributes are quoted, one root. */
function checkXml(text: string): string[] {
  const problems: string[] = [];
  const stack: string[] = [];
  const body = text.replace(/^<\?xml[^?]*\?>\s*/, '');
  const tagRe = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/g;
  let last = 0, roots = 0, m: RegExpExecArray | null;
  while ((m = tagRe.exec(body))) {
    const between = body.slice(last, m.index);
    if (/[<>]/.test(between)) problems.push(`stray markup near ${JSON.stringify(between.slice(0, 40))}`);
    if (/&(?!(lt|gt|amp|quot|apos);)/.test(between)) problems.push('unescaped &');
    last = tagRe.lastIndex;
    const [, closing, name, , selfClosing] = m;
    if (closing) {
      if (stack.pop() !== name) problems.push(`</${name}> closes the wrong element`);
    } else if (!selfClosing) {
      if (stack.length === 0) roots++;
      stack.push(name!);
    } else if (stack.length === 0) roots++;
  }
  if (/[<>]/.test(body.slice(last))) problems.push('markup after the last tag');
  if (stack.length) problems.push(`unclosed: ${stack.join(', ')}`);
  if (roots !== 1) problems.push(`${roots} root elements`);
  return problems;
}

describe('plot', () => {
  const rows = [8, 64, 512, 4096].flatMap((s) => [synthRow('allreduce', 'ring', s, 10 + s / 100, 10), synthRow('allreduce', 'tree', s, 8 + s / 50, 9)]);
  const svg = renderPlot('ringtree bench: allreduce & <test>', seriesFromRows(rows, false), crossoverMarkers({ allreduce: { bytes: 512, reason: 'x' } }, false));

  it('is well-formed SVG', () => {
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(checkXml(svg)).toEqual([]);
    expect(svg).toContain('xmlns="http://www.w3.org/2000/svg"');
    expect(svg).toContain('&amp; &lt;test&gt;');
    expect(checkXml('<svg><g></svg>')).not.toEqual([]); // the checker itself can fail
  });

  it('has both panels with labelled log axes, a legend with every series, and the crossover marked', () => {
    expect(svg.match(/class="panel"/g)).toHaveLength(2);
    expect(svg).toContain('bus bandwidth (GB/s)');
    expect(svg).toContain('latency per op (us)');
    expect(svg.match(/message size/g)).toHaveLength(2);
    expect(svg.match(/class="axis x-axis"/g)).toHaveLength(2);
    expect(svg.match(/class="axis y-axis"/g)).toHaveLength(2);
    expect(svg).toMatch(/class="legend"[\s\S]*>ring<[\s\S]*>tree</);
    expect(svg.match(/class="crossover"/g)).toHaveLength(2);
    expect(svg).toContain('crossover: 512 B');
    expect(svg.match(/class="series"/g)).toHaveLength(4);
  });

  it('draws no marker when there is no crossover', () => {
    const none = renderPlot('t', seriesFromRows(rows, true), crossoverMarkers({ allreduce: { bytes: null, reason: 'none' } }, true));
    expect(none).not.toContain('class="crossover"');
    expect(none).toContain('allreduce ring');
    expect(checkXml(none)).toEqual([]);
  });
});

describe('saved crossovers for auto', () => {
  it('merges per world size and is read back by algorithm selection through RINGTREE_CROSSOVERS_FILE', () => {
    let doc = mergeCrossovers(null, 2, { allreduce: { bytes: 4096, reason: '' }, broadcast: { bytes: null, reason: 'none' } }, '2026-01-01T00:00:00Z');
    doc = mergeCrossovers(doc, 4, { allreduce: { bytes: 65536, reason: '' } }, '2026-01-01T00:00:00Z');
    doc = mergeCrossovers(doc, 2, { allreduce: { bytes: 8192, reason: '' } }, '2026-01-02T00:00:00Z');
    expect(doc.crossovers.allReduce!.map((p) => [p.worldSize, p.crossoverBytes])).toEqual([[2, 8192], [4, 65536]]);
    expect(doc.crossovers.broadcast).toBeUndefined();
    const file = path.join(tmp, 'crossovers.json');
    writeFileSync(file, JSON.stringify(doc));
    const env = { RINGTREE_CROSSOVERS_FILE: file };
    expect(crossoverBytes('allReduce', 2, env)).toBe(8192);
    expect(crossoverBytes('allReduce', 3, env)).toBe(8192);
    expect(crossoverBytes('allReduce', 6, env)).toBe(65536);
    expect(autoAlgorithm('allReduce', 4096, 2, ['ring', 'tree'], env)).toBe('tree');
    expect(autoAlgorithm('allReduce', 8192, 2, ['ring', 'tree'], env)).toBe('ring');
    // The per-collective env override still wins; collectives absent from the file keep the shipped table.
    expect(crossoverBytes('allReduce', 2, { ...env, RINGTREE_CROSSOVER_ALLREDUCE: '5' })).toBe(5);
    expect(crossoverBytes('broadcast', 2, env)).toBe(crossoverBytes('broadcast', 2, {}));
  });

  it('ignores a malformed file (shipped table applies)', () => {
    const bad = path.join(tmp, 'bad.json');
    writeFileSync(bad, '{"schema":"ringtree-crossovers/1","crossovers":{"allReduce":[{"worldSize":"two"}]}}');
    expect(loadCrossoversFile(bad)).toBeNull();
    expect(crossoverBytes('allReduce', 3, { RINGTREE_CROSSOVERS_FILE: bad })).toBe(crossoverBytes('allReduce', 3, {}));
  });
});

describe('Open MPI peer', () => {
  it('parses its nccl-tests table and computes ratios', () => {
    const text = [
      '# mpi_collectives allreduce, 2 ranks',
      '#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong',
      '     1048576        262144     float     sum      -1    116.00    9.04    9.04       0    110.00    9.53    9.53       0',
      '     2097152        524288     float    none      -1    200.00   10.49   10.49       1       N/A     N/A     N/A     N/A',
      '# Out of bounds values : 1 FAILED',
    ].join('\n');
    const rows = parsePeerTable(text);
    expect(rows).toHaveLength(2);
    expect(rows[0]).toMatchObject({ size: 1048576, count: 262144, time: 116, busbw: 9.04, inPlaceBusbw: 9.53, wrong: 0 });
    expect(rows[1]).toMatchObject({ inPlaceTime: null, wrong: 1 });
    // Open MPI's better placement counts: in place at 1 MiB, out of place (the only one) for the N/A row.
    expect(bestPlacement(rows[0]!)).toEqual({ placement: 'in-place', busbw: 9.53, time: 110 });
    expect(bestPlacement(rows[1]!)).toEqual({ placement: 'out-of-place', busbw: 10.49, time: 200 });
    const peer = rows.map((p) => ({ size: p.size, busbw: p.busbw, time: p.time, label: 'default, out-of-place' }));
    const r = ratios([{ size: 1048576, busbw: 18.08, time: 58, label: 'ring' }, { size: 2097152, busbw: 5.245, time: 400, label: 'tree' }, { size: 8, busbw: 1, time: 1, label: 'x' }], peer);
    expect(r.rows.map((x) => x.ratio)).toEqual([2, 0.5]);
    expect(r.geomean).toBeCloseTo(1, 12);
    expect(r.min).toBe(0.5);
  });

  it('picks each side\'s best candidate by its median over rounds, not by each round\'s luckiest draw', () => {
    const c = (size: number, label: string, busbw: number) => ({ size, label, busbw, time: (1e6 * size) / (busbw * 1e9) });
    // A is steady at 10 GB/s; B and C are 8 but each had one lucky round (14).
    // Each round's best: 14, 14, 10, median 14, a figure no configuration
    // reaches typically. Medians first: A 10, B 8, C 8, so A's 10.
    const rounds = [
      [c(1048576, 'A', 10), c(1048576, 'B', 14), c(1048576, 'C', 8), c(8, 'A', 1)],
      [c(1048576, 'A', 10), c(1048576, 'B', 8), c(1048576, 'C', 14)],
      [c(1048576, 'A', 10), c(1048576, 'B', 8), c(1048576, 'C', 8)],
    ];
    const best = bestOfMedians(rounds);
    expect(best.map((b) => [b.size, b.label, b.busbw])).toEqual([[8, 'A', 1], [1048576, 'A', 10]]);
    expect(best[1]!.time).toBeCloseTo(c(1048576, 'A', 10).time, 9);
    // The median decides, not steadiness: B (20, 5, 10) beats A (9, 9, 9).
    const mixed = bestOfMedians([[c(64, 'A', 9), c(64, 'B', 20)], [c(64, 'A', 9), c(64, 'B', 5)], [c(64, 'A', 9), c(64, 'B', 10)]]);
    expect(mixed.map((b) => [b.label, b.busbw])).toEqual([['B', 10]]);
    expect(bestOfMedians([])).toEqual([]);
  });

  it('gives Open MPI its best shot on the command line', () => {
    const argv = peerCommand('/x/mpi_collectives', 4, 'allreduce', 5, { minBytes: 8, maxBytes: 64, stepFactor: 2, iters: 0, warmupIters: 3, reps: 5, root: 0 });
    const line = argv.join(' ');
    expect(line).toContain('--allow-run-as-root --oversubscribe -np 4');
    expect(line).toContain('GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184');
    expect(line).toContain('--mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm 5');
    expect(peerCommand('/x', 2, 'allreduce', null, { minBytes: 8, maxBytes: 64, stepFactor: 2, iters: 0, warmupIters: 3, reps: 5, root: 0 }).join(' ')).not.toContain('--mca');
  });
});

describe('ringtree bench (real ranks)', () => {
  beforeAll(() => buildCli(), 120_000);

  it('a tiny allreduce sweep over ring and tree: nccl-tests tables, #wrong 0, a JSON document that matches the schema', async () => {
    const json = path.join(tmp, 'f.json');
    const run = await runCli(['bench', 'allreduce', '-b', '8', '-e', '1024', '-n', '2', '-w', '1', '--algo', 'ring,tree', '--json', json], { timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong');
    expect(run.stdout).toContain('# allreduce, algorithm ring');
    expect(run.stdout).toContain('# allreduce, algorithm tree');
    expect(run.stdout).toContain('# allreduce: comparison');
    expect(run.stdout).toMatch(/# allreduce: tree -> ring crossover: /);
    expect(run.stdout.match(/# Out of bounds values : 0 OK/g)).toHaveLength(2);
    expect(run.stdout).toMatch(/# Avg bus bandwidth {4}: \d/);
    expect(run.stderr).not.toContain('@progress'); // progress is a TTY-only bar, never raw lines
    const doc = JSON.parse(readFileSync(json, 'utf8')) as BenchJson;
    expect(validateBenchJson(doc)).toEqual([]);
    expect(doc.rows).toHaveLength(16); // 8 sizes x 2 algorithms
    expect(doc.rows.every((r) => r.outOfPlace.wrong === 0 && r.inPlace!.wrong === 0 && r.iters === 2 && r.outOfPlace.samples.length === 5)).toBe(true);
    expect(doc.rows.every((r) => typeof r.outOfPlace.cpuBusy === 'number' && r.outOfPlace.cpuBusy > 0)).toBe(true);
    expect(doc.rows.map((r) => r.size)).toEqual([8, 16, 32, 64, 128, 256, 512, 1024].flatMap((s) => [s, s]));
    expect(doc.out_of_bounds).toBe(0);
    expect(doc.commands.bench[0]).toContain('bench allreduce -b 8 -e 1024');
    expect(doc.commands.ranks[0]).toContain('rank.js');
    expect(JSON.stringify(doc.environment)).not.toContain('RINGTREE_TOKEN');
    expect(validateBenchJson({ ...doc, rows: [{ ...doc.rows[0], size: 'big' }] })).toContain('rows[0].size is not an integer');
  });

  it('every collective, sendrecv without an in-place form, an injected wrong element exits 1', async () => {
    const json = path.join(tmp, 'all.json');
    const run = await runCli(['bench', 'all', '-b', '64', '-e', '4096', '-f', '64', '-n', '1', '-w', '0', '--reps', '1', '--json', json],
      { timeoutMs: 60_000, env: { ...process.env, RINGTREE_BENCH_FAULT_INJECT: 'wrong' } });
    expect(run.code).toBe(1);
    // One spoiled element per (collective, size) on rank 0: 6 collectives x 2 sizes.
    expect(run.stdout).toContain('# All tables: Out of bounds values : 12 FAILED');
    const doc = JSON.parse(readFileSync(json, 'utf8')) as BenchJson;
    expect(validateBenchJson(doc)).toEqual([]);
    expect(new Set(doc.rows.map((r) => r.collective))).toEqual(new Set(BENCH_COLLECTIVES));
    const sendrecv = doc.rows.filter((r) => r.collective === 'sendrecv');
    expect(sendrecv.every((r) => r.inPlace === null && r.algorithm === 'p2p')).toBe(true);
    expect(doc.rows.filter((r) => r.collective === 'allgather').map((r) => r.algorithm)).toEqual(['ring', 'ring']);
    expect(run.stdout).toContain("# allgather: 'tree' skipped");
  });

  it("'auto' runs what a --save-crossovers file says (RINGTREE_CROSSOVERS_FILE), as the engine's stats report", async () => {
    const file = path.join(tmp, 'xo-run.json');
    writeFileSync(file, JSON.stringify(mergeCrossovers(null, 2, { allreduce: { bytes: 1024, reason: '' } }, '2026-01-01T00:00:00Z')));
    const json = path.join(tmp, 'auto.json');
    const run = await runCli(['bench', 'allreduce', '-b', '256', '-e', '4096', '-f', '4', '-n', '1', '-w', '0', '--reps', '1', '--algo', 'auto', '--json', json],
      { timeoutMs: 60_000, env: { ...process.env, RINGTREE_CROSSOVERS_FILE: file } });
    expect(run.code, run.stderr).toBe(0);
    const doc = JSON.parse(readFileSync(json, 'utf8')) as BenchJson;
    expect(doc.rows.map((r) => [r.size, r.resolved])).toEqual([[256, 'tree'], [1024, 'ring'], [4096, 'ring']]);
    expect((doc.environment as { variables: Record<string, string> }).variables.RINGTREE_CROSSOVERS_FILE).toBe(file);
  });

  const hasMpi = spawnSync('sh', ['-c', 'command -v mpicc && command -v mpirun'], { stdio: 'ignore' }).status === 0;
  it.skipIf(!hasMpi)('--vs mpi runs the Open MPI peer in alternating rounds and prints ratios (skipped without mpicc/mpirun)', async () => {
    const json = path.join(tmp, 'vs.json');
    const run = await runCli(['bench', 'allreduce', '-b', '1K', '-e', '4K', '-f', '4', '-n', '2', '-w', '1', '--reps', '1', '--algo', 'ring',
      '--vs', 'mpi', '--rounds', '2', '--json', json], { timeoutMs: 90_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('# allreduce: ringtree / Open MPI, 2 ranks');
    expect(run.stdout).toMatch(/# allreduce: geometric mean \d+\.\d\d, minimum \d+\.\d\d/);
    expect(run.stdout).toContain('by its median over 2 alternating rounds');
    expect(run.stdout).toMatch(/# allreduce: against the median of each round's best instead: geometric mean \d+\.\d\d, minimum \d+\.\d\d \(\d+\.\d\d \d+\.\d\d\)/);
    const doc = JSON.parse(readFileSync(json, 'utf8')) as BenchJson;
    expect(validateBenchJson(doc)).toEqual([]);
    expect(doc.rows.map((r) => r.round)).toEqual([0, 0, 1, 1]);
    expect(doc.commands.ranks).toHaveLength(2);
    expect(doc.commands.peers.length).toBe(2 * 4); // 4 Open MPI configurations per round
    expect(doc.commands.peers.every((c) => c.includes('--allow-run-as-root --oversubscribe'))).toBe(true);
    const peers = doc.peers as { allreduce: { ratios: { rows: { ours: { label: string } }[] }; ratiosOfRoundBests: { rows: unknown[] } } };
    expect(peers.allreduce.ratios.rows).toHaveLength(2);
    expect(peers.allreduce.ratios.rows.map((r) => r.ours.label)).toEqual(expect.arrayContaining([expect.stringMatching(/^ring, (in|out-of)-place$/)]));
    expect(peers.allreduce.ratiosOfRoundBests.rows).toHaveLength(2);
  });

  it('usage errors exit 2 naming the flag; --backend nccl without a CUDA driver exits 1 with BackendUnavailableError', async () => {
    const bad = await runCli(['bench', '-e', 'huge']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('-e/--maxbytes');
    const nccl = await runCli(['bench', '--backend', 'nccl']);
    expect(nccl.code).toBe(1);
    expect(nccl.stderr).toContain('BackendUnavailableError');
    const help = await runCli(['bench', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--save-crossovers');
  });
});
