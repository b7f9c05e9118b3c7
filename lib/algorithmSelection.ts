// How `algorithm: 'auto'` picks between ring and tree on the CPU engine.
//
// The tree needs O(log n) hops per chunk where the ring needs 2(n-1) (allReduce)
// or n-1 (broadcast, reduce), so it wins while a message is latency-bound; the
// ring moves the bandwidth-optimal amount of data, so it wins once a message
// is large. The switch happens at a crossover size measured with
// `bench/allreduce.mjs --algorithm tree|ring` (see DEFAULT_CROSSOVERS).
import { readFileSync } from 'node:fs';
import type { Algorithm, CollectiveName } from './comm.js';

/** One collective's crossover points: tree strictly below, ring at and above. */
export interface Crossover {
  /**
   * Crossover message size in bytes per world size: the entry with the
   * largest `worldSize` not above the communicator's size applies.
   */
  readonly points: readonly { readonly worldSize: number; readonly crossoverBytes: number }[];
}

/**
 * Shipped crossover points (bytes of the whole buffer). Collectives missing
 * here have only one algorithm.
 *
 * Measured 2026-11-28 on the 2-core CI-like VM (Node 20, shared memory,
 * float32 sum, default 256 KiB slots and chunks), load average ~6 from other
 * jobs, so single numbers are noisy. First with
 *   node dist/cli.js launch --nproc N bench/allreduce.mjs --algorithm tree|ring --min 8 --max 4194304 --reps 3
 * (medians swung 2-10x between runs: too noisy to place a crossover), then
 * with tree and ring interleaved in one job, best of 7 repetitions (us):
 *   n=2: 64 B 25.7 / 30.5, 4 KiB 21.6 / 20.9, 64 KiB 122 / 111,
 *        1 MiB 144 / 150, 4 MiB 2455 / 2513: equal within noise (at n = 2 both
 *        are one exchange of halves), so ring.
 *   n=3: 32 KiB 159 / 170, 128 KiB 145 / 182, 256 KiB 241 / 206,
 *        1 MiB 915 / 640: crossover ~256 KiB.
 *   n=4 (more ranks than cores): 64 B 254 / 324, 16 KiB 200 / 334,
 *        64 KiB 212-244 / 266-274, 256 KiB 224-386 / 255-316,
 *        512 KiB 438 / 306, 4 MiB 2419 / 1715: crossover ~256 KiB.
 * broadcast and reduce at n=4 (tree / ring, us): 1 KiB 304 / 236 and
 * 162 / 153, 128 KiB 464 / 316 and 205 / 227, 1 MiB 551 / 577 and 499 / 506:
 * no clear win (both first run the n-1 hop verification pass around the
 * ring, which dominates at these sizes), so 'auto' keeps the ring for them.
 */
export const DEFAULT_CROSSOVERS: Readonly<Partial<Record<CollectiveName, Crossover>>> = Object.freeze({
  allReduce: { points: [{ worldSize: 2, crossoverBytes: 0 }, { worldSize: 3, crossoverBytes: 256 * 1024 }] },
  broadcast: { points: [{ worldSize: 2, crossoverBytes: 0 }] },
  reduce: { points: [{ worldSize: 2, crossoverBytes: 0 }] },
});

/** `RINGTREE_CROSSOVER_ALLREDUCE` etc.: overrides every world size's crossover for one collective. */
export function crossoverEnvName(kind: CollectiveName): string {
  return `RINGTREE_CROSSOVER_${kind.toUpperCase()}`;
}

/** Env variable naming a crossovers file written by `ringtree bench --save-crossovers FILE`. */
export const CROSSOVERS_FILE_ENV = 'RINGTREE_CROSSOVERS_FILE';

const savedCrossovers = new Map<string, Partial<Record<CollectiveName, Crossover>> | null>();

/**
 * The crossovers in a `ringtree bench --save-crossovers` file
 * (`{ "schema": "ringtree-crossovers/1", "crossovers": { "allReduce": [{ "worldSize": 2, "crossoverBytes": 65536 }] } }`),
 * read once per process and path. An unreadable or malformed file is reported
 * once on stderr and ignored (the shipped table applies).
 */
export function loadCrossoversFile(file: string): Partial<Record<CollectiveName, Crossover>> | null {
  if (savedCrossovers.has(file)) return savedCrossovers.get(file)!;
  let table: Partial<Record<CollectiveName, Crossover>> | null = null;
  try {
    const doc = JSON.parse(readFileSync(file, 'utf8')) as { schema?: string; crossovers?: Record<string, unknown> };
    if (doc.schema !== 'ringtree-crossovers/1' || typeof doc.crossovers !== 'object' || doc.crossovers === null) throw new Error('not a ringtree-crossovers/1 document');
    table = {};
    for (const [kind, points] of Object.entries(doc.crossovers)) {
      if (!Array.isArray(points)) throw new Error(`crossovers.${kind} is not an array`);
      const ok = points.every((p: { worldSize?: unknown; crossoverBytes?: unknown }) =>
        Number.isSafeInteger(p.worldSize) && (p.worldSize as number) >= 1 && Number.isSafeInteger(p.crossoverBytes) && (p.crossoverBytes as number) >= 0);
      if (!ok) throw new Error(`crossovers.${kind} needs { worldSize, crossoverBytes } integers`);
      table[kind as CollectiveName] = { points: points.map((p: { worldSize: number; crossoverBytes: number }) => ({ worldSize: p.worldSize, crossoverBytes: p.crossoverBytes })) };
    }
  } catch (err) {
    process.stderr.write(`ringtree: ignoring ${CROSSOVERS_FILE_ENV}=${file}: ${err instanceof Error ? err.message : String(err)}; using the shipped crossovers\n`);
    table = null;
  }
  savedCrossovers.set(file, table);
  return table;
}

function pointFor(points: readonly { worldSize: number; crossoverBytes: number }[], worldSize: number): number | undefined {
  let best: number | undefined;
  let bestSize = -1;
  for (const p of points) {
    if (p.worldSize <= worldSize && p.worldSize > bestSize) { best = p.crossoverBytes; bestSize = p.worldSize; }
  }
  return best;
}

/**
 * The crossover in bytes for `kind` at `worldSize`: the env override when set
 * to a non-negative integer (ignored otherwise); else the point for this world
 * size in the file named by RINGTREE_CROSSOVERS_FILE (`ringtree bench
 * --save-crossovers`; the entry with the largest worldSize not above
 * `worldSize`); else the shipped table. 0 means always ring; a huge value
 * means always tree.
 */
export function crossoverBytes(kind: CollectiveName, worldSize: number, env: NodeJS.ProcessEnv = process.env): number {
  const override = env[crossoverEnvName(kind)];
  if (override !== undefined && override !== '') {
    const v = Number(override);
    if (Number.isSafeInteger(v) && v >= 0) return v;
  }
  const file = env[CROSSOVERS_FILE_ENV];
  if (file) {
    const saved = loadCrossoversFile(file)?.[kind];
    const v = saved ? pointFor(saved.points, worldSize) : undefined;
    if (v !== undefined) return v;
  }
  const points = DEFAULT_CROSSOVERS[kind]?.points ?? [];
  let best = 0;
  let bestSize = -1;
  for (const p of points) {
    if (p.worldSize <= worldSize && p.worldSize > bestSize) { best = p.crossoverBytes; bestSize = p.worldSize; }
  }
  if (bestSize < 0 && points.length) best = points[0].crossoverBytes;
  return best;
}

/**
 * What `'auto'` runs for a `bytes`-byte call of `kind` on `worldSize` ranks,
 * among the `supported` algorithms. Every rank computes the same answer from
 * values they agree on (the env override must match on every rank, or the
 * call fails with CollectiveMismatchError).
 */
export function autoAlgorithm(kind: CollectiveName, bytes: number, worldSize: number,
  supported: readonly Exclude<Algorithm, 'auto'>[], env: NodeJS.ProcessEnv = process.env): Exclude<Algorithm, 'auto'> {
  if (supported.length === 1 || !supported.includes('tree') || worldSize <= 1) return supported[0];
  return bytes < crossoverBytes(kind, worldSize, env) ? 'tree' : 'ring';
}
