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
 * Measured on the 2-core CI-like VM (Node 20, shared memory, float32 sum,
 * default 256 KiB slots/chunks, out-of-place median time):
 *   node dist/cli.js launch --nproc N bench/allreduce.mjs --algorithm tree|ring --min 8 --max 4194304
 * MEASUREMENTS_PLACEHOLDER
 */
export const DEFAULT_CROSSOVERS: Readonly<Partial<Record<CollectiveName, Crossover>>> = Object.freeze({
  allReduce: { points: [{ worldSize: 2, crossoverBytes: 0 }] },
  broadcast: { points: [{ worldSize: 2, crossoverBytes: 0 }] },
  reduce: { points: [{ worldSize: 2, crossoverBytes: 0 }] },
});

/** `RINGTREE_CROSSOVER_ALLREDUCE` etc.: overrides every world size's crossover for one collective. */
export function crossoverEnvName(kind: CollectiveName): string {
  return `RINGTREE_CROSSOVER_${kind.toUpperCase()}`;
}

/**
 * The crossover in bytes for `kind` at `worldSize`: the env override when set
 * to a non-negative integer, else the shipped table; Infinity (always tree)
 * is never returned, 0 means always ring.
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
