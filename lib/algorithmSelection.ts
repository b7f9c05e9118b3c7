// How `algorithm: 'auto'` picks between ring and tree on the CPU engine.
//
// The tree needs O(log n) hops per chunk where the ring needs 2(n-1) (allReduce)
// or n-1 (broadcast, reduce), so it wins while a message is latency-bound; the
// ring moves the bandwidth-optimal amount of data, so it wins once a message
// is large. The switch happens at a crossover size measured with
// `bench/allreduce.mjs --algorithm tree|ring` (see DEFAULT_CROSSOVERS).
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

/**
 * The crossover in bytes for `kind` at `worldSize`: the env override when set
 * to a non-negative integer (ignored otherwise), else the shipped table.
 * 0 means always ring; a huge value means always tree.
 */
export function crossoverBytes(kind: CollectiveName, worldSize: number, env: NodeJS.ProcessEnv = process.env): number {
  const override = env[crossoverEnvName(kind)];
  if (override !== undefined && override !== '') {
    const v = Number(override);
    if (Number.isSafeInteger(v) && v >= 0) return v;
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
