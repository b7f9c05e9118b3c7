/**
 * `DistributedSampler`: which dataset indices each rank reads in an epoch,
 * with the rules of PyTorch's `torch.utils.data.DistributedSampler`.
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** Options of {@link DistributedSampler}. */
export interface DistributedSamplerOptions {
  /** Number of ranks sharing the dataset (PyTorch's `num_replicas`). Required. */
  numReplicas: number;
  /** This rank, 0..numReplicas-1. Required. */
  rank: number;
  /** Permute the indices every epoch. Default true. */
  shuffle?: boolean;
  /** Seed of the permutation; must be the same on every rank. Default 0. */
  seed?: number;
  /** Drop the tail so every rank gets the same count without padding. Default false. */
  dropLast?: boolean;
}

/**
 * Splits `datasetLength` indices across ranks, PyTorch's way:
 * - `shuffle`: one permutation of `0..N-1` per epoch, the same on every rank,
 *   from a PRNG seeded with `seed + epoch` (call {@link setEpoch} before each
 *   epoch, or the order never changes). The permutation is computed the way
 *   PyTorch's CPU `torch.randperm` does it for n < 2^32 / 20 (see {@link permutation}).
 * - without `dropLast`: `numSamples = ceil(N / R)`; the index list is padded
 *   to `numSamples * R` by repeating it from its start (more than once if R > N).
 * - with `dropLast` and N not divisible by R: `numSamples = ceil((N - R) / R)`,
 *   the list is cut to `numSamples * R`.
 * - rank r takes `indices[r], indices[r + R], indices[r + 2R], ...` (strided).
 */
export class DistributedSampler implements Iterable<number> {
  /** The dataset size this sampler was made for. */
  readonly datasetLength: number;
  /** Number of ranks. */
  readonly numReplicas: number;
  /** This rank. */
  readonly rank: number;
  /** Whether each epoch is permuted. */
  readonly shuffle: boolean;
  /** Seed of the permutations. */
  readonly seed: number;
  /** Whether the tail is dropped instead of padded. */
  readonly dropLast: boolean;
  /** Indices every rank gets per epoch. */
  readonly numSamples: number;
  /** `numSamples * numReplicas`: indices all ranks together read per epoch. */
  readonly totalSize: number;
  private epoch = 0;

  /**
   * @param datasetLength number of samples N (a non-negative integer).
   * @param options replicas, rank, shuffle (default true), seed (default 0), dropLast (default false).
   * @throws {InvalidArgumentError} for a rank outside [0, numReplicas) or non-integer sizes.
   */
  constructor(datasetLength: number, options: DistributedSamplerOptions) {
    const { numReplicas, rank } = options;
    if (!Number.isInteger(datasetLength) || datasetLength < 0) {
      throw new InvalidArgumentError(`\`datasetLength\` must be a non-negative integer, got ${String(datasetLength)}`, { op: 'DistributedSampler' });
    }
    if (!Number.isInteger(numReplicas) || numReplicas < 1) {
      throw new InvalidArgumentError(`\`numReplicas\` must be a positive integer, got ${String(numReplicas)}`, { op: 'DistributedSampler' });
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) {
      throw new InvalidArgumentError(`Invalid rank ${String(rank)}, rank should be in the interval [0, ${numReplicas - 1}]`, { op: 'DistributedSampler' });
    }
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed)) throw new InvalidArgumentError(`\`seed\` must be an integer, got ${String(seed)}`, { op: 'DistributedSampler' });
    this.datasetLength = datasetLength;
    this.numReplicas = numReplicas;
    this.rank = rank;
    this.shuffle = options.shuffle ?? true;
    this.seed = seed;
    this.dropLast = options.dropLast ?? false;
    this.numSamples = this.dropLast && datasetLength % numReplicas !== 0
      ? Math.ceil((datasetLength - numReplicas) / numReplicas)
      : Math.ceil(datasetLength / numReplicas);
    this.numSamples = Math.max(0, this.numSamples);
    this.totalSize = this.numSamples * numReplicas;
  }

  /**
   * Set the epoch used to seed the next permutation (`seed + epoch`).
   * @throws {InvalidArgumentError} for a non-integer epoch.
   */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw new InvalidArgumentError(`\`epoch\` must be a non-negative integer, got ${String(epoch)}`, { op: 'DistributedSampler.setEpoch' });
    this.epoch = epoch;
  }

  /** This rank's indices for the current epoch (`numSamples` of them). */
  indices(): number[] {
    const n = this.datasetLength;
    let all: number[];
    if (this.shuffle) {
      all = permutation(n, this.seed + this.epoch);
    } else {
      all = Array.from({ length: n }, (_, i) => i);
    }
    if (!this.dropLast) {
      const padding = this.totalSize - all.length;
      if (padding > 0 && n > 0) {
        const base = all.slice();
        for (let i = 0; i < padding; i++) all.push(base[i % n]!);
      }
    } else {
      all = all.slice(0, this.totalSize);
    }
    const mine: number[] = [];
    for (let i = this.rank; i < this.totalSize; i += this.numReplicas) mine.push(all[i]!);
    return mine;
  }

  /** Iterate over {@link indices}. */
  [Symbol.iterator](): Iterator<number> {
    return this.indices()[Symbol.iterator]();
  }

  /** Same as {@link numSamples} (PyTorch's `len(sampler)`). */
  get length(): number {
    return this.numSamples;
  }
}

/**
 * A permutation of `0..n-1` from MT19937 seeded with `seed` (low 32 bits),
 * by Fisher-Yates: position i swaps with i + (next32 mod (n - i)), the
 * algorithm of PyTorch's CPU `randperm` on a generator after `manual_seed(seed)`.
 * `permutation(10, 0)` is `[4, 1, 7, 5, 3, 9, 0, 8, 6, 2]`, the output commonly
 * quoted for `torch.manual_seed(0); torch.randperm(10)` (ringtree's tests pin
 * it; they were not run against an installed PyTorch). Deterministic on every platform.
 *
 * @param n length (a non-negative integer).
 * @param seed integer seed; DistributedSampler passes `seed + epoch`.
 */
export function permutation(n: number, seed: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  const rng = new Mt19937(seed);
  for (let i = 0; i < n - 1; i++) {
    const z = i + (rng.next() % (n - i));
    const t = out[i]!;
    out[i] = out[z]!;
    out[z] = t;
  }
  return out;
}

/** The 32-bit Mersenne Twister (Matsumoto & Nishimura 1998), `init_genrand` seeding. */
class Mt19937 {
  private readonly mt = new Uint32Array(624);
  private index = 624;

  constructor(seed: number) {
    this.mt[0] = seed >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = this.mt[i - 1]! ^ (this.mt[i - 1]! >>> 30);
      // 1812433253 * prev + i, in 32 bits without losing precision to doubles.
      this.mt[i] = (((((prev & 0xffff0000) >>> 16) * 1812433253) << 16) + (prev & 0x0000ffff) * 1812433253 + i) >>> 0;
    }
  }

  next(): number {
    if (this.index >= 624) this.twist();
    let y = this.mt[this.index++]!;
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  private twist(): void {
    const mt = this.mt;
    for (let i = 0; i < 624; i++) {
      const y = (mt[i]! & 0x80000000) | (mt[(i + 1) % 624]! & 0x7fffffff);
      mt[i] = mt[(i + 397) % 624]! ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
    }
    this.index = 0;
  }
}
