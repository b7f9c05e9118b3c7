import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { autoAlgorithm, crossoverBytes } from '../lib/algorithmSelection.js';
import { CPU_ALGORITHMS } from '../lib/comm.js';
import { treeCases } from './workers/tree-cases.mjs';

// The tree algorithms (double binary tree allreduce, tree broadcast/reduce)
// on real ranks: one `ringtree launch` per configuration runs the case table
// of test/workers/tree-cases.mjs (tree-rank.mjs); each rank checks its
// results against the JS reference and reports hashes, comm.stats() traffic
// and the unsupported-pair errors. The ranks run the compiled dist/: build
// with `npx tsc -p tsconfig.json` first.

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cliPath = path.join(repoRoot, 'dist', 'cli.js');
const worker = path.join(repoRoot, 'test', 'workers', 'tree-rank.mjs');

interface Report {
  rank: number; size: number; results: Record<string, { errors: string[]; hash?: string }>;
  traffic: Record<'tree' | 'ring', { bytesSent: number[]; bytesReceived: number[]; algorithms: { ring: number; tree: number } }>;
  invalid: Record<string, { resolved?: boolean; isInvalidArgument?: boolean; message?: string }>;
}

function launch(n: number, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<{ reports: Report[]; log: string }> {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-tree-'));
  const child = spawn(process.execPath, [cliPath, 'launch', '--nproc', String(n), worker], {
    cwd: repoRoot, env: { ...process.env, ...env, RINGTREE_TEST_OUT: outDir }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let log = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (log += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (log += s));
  return new Promise((resolve) => {
    const timer = setTimeout(() => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } log += '\n[test] killed'; }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      const reports: Report[] = [];
      for (let r = 0; r < n; r++) {
        try { reports.push(JSON.parse(readFileSync(path.join(outDir, `rank${r}.json`), 'utf8'))); } catch { /* missing: asserted below */ }
      }
      rmSync(outDir, { recursive: true, force: true });
      resolve({ reports, log: `exit ${code}\n${log.split('\n').slice(-30).join('\n')}` });
    });
  });
}

/** The double binary tree of native/cpu/algorithms/BinaryTree.h, restated: parents per rank. */
function doubleTreeParents(n: number, tree: 0 | 1): number[] {
  const tree0 = Array.from({ length: n }, (_, r) => {
    const x = r + 1, low = x & -x;
    let up = (x ^ low) | (low << 1);
    if (up >= n + 1) up = x ^ low;
    return up - 1;
  });
  return Array.from({ length: n }, (_, r) => {
    if (tree === 0) return tree0[r];
    const p = n % 2 === 0 ? tree0[n - 1 - r] : tree0[(r - 1 + n) % n];
    return p < 0 ? -1 : n % 2 === 0 ? n - 1 - p : (p + 1) % n;
  });
}

function treeNeighbours(n: number, rank: number): number[] {
  const set = new Set<number>();
  for (const t of [0, 1] as const) {
    const p = doubleTreeParents(n, t);
    if (p[rank] >= 0) set.add(p[rank]);
    p.forEach((q, r) => { if (q === rank) set.add(r); });
  }
  return [...set].sort((a, b) => a - b);
}

const peersOf = (bytes: number[]) => bytes.flatMap((b, i) => (b > 0 ? [i] : []));

describe('double binary tree shape', () => {
  it.each([2, 3, 4, 5, 6, 7, 8, 16, 33])('at %i ranks: two spanning trees, every rank a leaf in at least one', (n) => {
    const interior = new Array(n).fill(0);
    for (const t of [0, 1] as const) {
      const p = doubleTreeParents(n, t);
      expect(p.filter((q) => q < 0)).toHaveLength(1);
      const kids = new Array(n).fill(0);
      p.forEach((q) => { if (q >= 0) kids[q]++; });
      expect(Math.max(...kids)).toBeLessThanOrEqual(2);
      kids.forEach((k, r) => { if (k) interior[r]++; });
    }
    expect(Math.max(...interior)).toBe(1);
  });
});

describe('auto algorithm selection', () => {
  it('picks tree below the crossover, ring at and above, and honours the env override', () => {
    const x = crossoverBytes('allReduce', 4, {});
    expect(x).toBeGreaterThan(0);
    expect(autoAlgorithm('allReduce', x - 1, 4, CPU_ALGORITHMS.allReduce, {})).toBe('tree');
    expect(autoAlgorithm('allReduce', x, 4, CPU_ALGORITHMS.allReduce, {})).toBe('ring');
    expect(autoAlgorithm('allReduce', 8, 1, CPU_ALGORITHMS.allReduce, {})).toBe('ring');
    expect(autoAlgorithm('allGather', 8, 4, CPU_ALGORITHMS.allGather, {})).toBe('ring');
    const env = { RINGTREE_CROSSOVER_ALLREDUCE: '1000' };
    expect(autoAlgorithm('allReduce', 999, 2, CPU_ALGORITHMS.allReduce, env)).toBe('tree');
    expect(autoAlgorithm('allReduce', 1000, 8, CPU_ALGORITHMS.allReduce, env)).toBe('ring');
    expect(crossoverBytes('allReduce', 4, { RINGTREE_CROSSOVER_ALLREDUCE: 'junk' })).toBe(x);
  });
});

interface Config { name: string; size: number; table: 'full' | 'small'; env?: NodeJS.ProcessEnv }
const CONFIGS: Config[] = [
  { name: 'world size 1', size: 1, table: 'full' },
  { name: 'world size 2', size: 2, table: 'full' },
  { name: 'world size 3', size: 3, table: 'full' },
  { name: 'world size 4', size: 4, table: 'full' },
  { name: 'world size 5', size: 5, table: 'small' },
  { name: 'world size 7', size: 7, table: 'small' },
  // Two 4 KiB slots per channel: the deadlock argument under the tightest budget.
  { name: 'world size 4, slots: 2 of 4 KiB', size: 4, table: 'full', env: { RINGTREE_SLOTS: '2', RINGTREE_SLOT_BYTES: '4096' } },
  { name: 'world size 5, slots: 2 of 4 KiB', size: 5, table: 'small', env: { RINGTREE_SLOTS: '2', RINGTREE_SLOT_BYTES: '4096' } },
];

describe.each(CONFIGS)('tree collectives, $name', (cfg) => {
  let run: Promise<{ reports: Report[]; log: string }> | undefined;
  const get = () => (run ??= launch(cfg.size, cfg.env ?? {}, 150_000));

  it('every rank reports every case equal to the JS reference, bit-identical across ranks', async () => {
    const { reports, log } = await get();
    expect(reports.length, log).toBe(cfg.size);
    const failures: string[] = [];
    for (const c of treeCases(cfg.size, cfg.table)) {
      const hashes = new Set<string>();
      for (const rep of reports) {
        const res = rep.results[c.id];
        if (!res) { failures.push(`${c.id}: rank ${rep.rank} did not report`); continue; }
        for (const e of res.errors) failures.push(`${c.id} rank ${rep.rank}: ${e}`);
        if (res.hash) hashes.add(res.hash);
      }
      if (c.coll !== 'reduce' && hashes.size > 1) failures.push(`${c.id}: results differ across ranks`);
    }
    expect(failures, log).toEqual([]);
  }, 160_000);

  it('unsupported (collective, algorithm) pairs are InvalidArgumentError listing the supported ones', async () => {
    const { reports, log } = await get();
    expect(reports.length, log).toBe(cfg.size);
    for (const rep of reports) {
      for (const name of ['allGather', 'reduceScatter', 'barrier', 'allReduce']) {
        const e = rep.invalid[name];
        expect(e.isInvalidArgument, `${name}: ${JSON.stringify(e)}`).toBe(true);
        expect(e.message).toMatch(/supported: ring/);
        expect(e.message).toMatch(/allReduce: ring, tree/);
      }
    }
  }, 160_000);

  if (cfg.size === 3 || cfg.size === 4) {
    it('stats(): the tree talks to its tree neighbours, the ring only to rank+1 (tree is not ring in disguise)', async () => {
      const { reports, log } = await get();
      expect(reports.length, log).toBe(cfg.size);
      let differs = false;
      for (const rep of reports) {
        const { tree, ring } = rep.traffic;
        expect(tree.algorithms).toEqual({ ring: 0, tree: 1 });
        expect(ring.algorithms).toEqual({ ring: 1, tree: 0 });
        expect(peersOf(ring.bytesSent)).toEqual([(rep.rank + 1) % cfg.size]);
        expect(peersOf(tree.bytesSent)).toEqual(treeNeighbours(cfg.size, rep.rank));
        expect(peersOf(tree.bytesReceived)).toEqual(treeNeighbours(cfg.size, rep.rank));
        if (JSON.stringify(peersOf(tree.bytesSent)) !== JSON.stringify(peersOf(ring.bytesSent))) differs = true;
      }
      expect(differs).toBe(true);
    }, 160_000);
  }
});
