// DistributedSampler: PyTorch's padding, striding, drop_last and seeded shuffle rules.
import { describe, expect, it } from 'vitest';
import { DistributedSampler, permutation } from '../lib/parallel/sampler.js';
import { InvalidArgumentError } from '../lib/errors.js';

function shards(n: number, replicas: number, options: { shuffle?: boolean; dropLast?: boolean; seed?: number; epoch?: number } = {}): number[][] {
  return Array.from({ length: replicas }, (_, rank) => {
    const s = new DistributedSampler(n, { numReplicas: replicas, rank, shuffle: options.shuffle, dropLast: options.dropLast, seed: options.seed });
    if (options.epoch !== undefined) s.setEpoch(options.epoch);
    return s.indices();
  });
}

describe('DistributedSampler (PyTorch rules)', () => {
  it('10 samples, 3 ranks, no shuffle: ceil(10/3) = 4 each, padded with 0 and 1 from the start, rank-strided', () => {
    expect(shards(10, 3, { shuffle: false })).toEqual([[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]);
    expect(new DistributedSampler(10, { numReplicas: 3, rank: 0 }).length).toBe(4);
  });

  it('dropLast: ceil((10 - 3)/3) = 3 each, the tail (index 9) dropped', () => {
    expect(shards(10, 3, { shuffle: false, dropLast: true })).toEqual([[0, 3, 6], [1, 4, 7], [2, 5, 8]]);
    // Divisible: nothing dropped.
    expect(shards(9, 3, { shuffle: false, dropLast: true })).toEqual([[0, 3, 6], [1, 4, 7], [2, 5, 8]]);
  });

  it('more ranks than samples: the list repeats from its start as often as needed', () => {
    expect(shards(2, 5, { shuffle: false })).toEqual([[0], [1], [0], [1], [0]]);
    expect(shards(2, 5, { shuffle: false, dropLast: true })).toEqual([[], [], [], [], []]);
  });

  it('shuffled shards are disjoint and cover the dataset (divisible), for several sizes, ranks and epochs', () => {
    for (const [n, r] of [[12, 3], [64, 4], [100, 2], [1000, 8]] as const) {
      for (const epoch of [0, 1, 5]) {
        const all = shards(n, r, { seed: 42, epoch }).flat();
        expect(all).toHaveLength(n);
        expect(new Set(all).size).toBe(n);
      }
    }
  });

  it('shuffled with padding: every index appears, and exactly totalSize - N of them twice', () => {
    const all = shards(103, 4, { seed: 1 }).flat();
    expect(all).toHaveLength(104);
    expect(new Set(all).size).toBe(103);
  });

  it('the permutation depends on seed + epoch only: same on every rank, changes with setEpoch', () => {
    const e0 = shards(50, 2, { seed: 3, epoch: 0 });
    expect(shards(50, 2, { seed: 3, epoch: 0 })).toEqual(e0);
    expect(shards(50, 2, { seed: 3, epoch: 1 })).not.toEqual(e0);
    // seed 3 + epoch 1 and seed 4 + epoch 0 are the same generator seed, as in PyTorch.
    expect(shards(50, 2, { seed: 4, epoch: 0 })).toEqual(shards(50, 2, { seed: 3, epoch: 1 }));
    const s = new DistributedSampler(50, { numReplicas: 2, rank: 0, seed: 3 });
    expect([...s]).toEqual(e0[0]);
  });

  it('permutation() is MT19937 + Fisher-Yates as torch.randperm: seed 0, n = 10 gives the commonly quoted [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]', () => {
    expect(permutation(10, 0)).toEqual([4, 1, 7, 5, 3, 9, 0, 8, 6, 2]);
    expect(permutation(0, 0)).toEqual([]);
    expect(permutation(1, 9)).toEqual([0]);
  });

  it('rejects a rank out of range and bad sizes', () => {
    expect(() => new DistributedSampler(10, { numReplicas: 3, rank: 3 })).toThrow(/Invalid rank 3/);
    expect(() => new DistributedSampler(-1, { numReplicas: 3, rank: 0 })).toThrow(InvalidArgumentError);
    expect(() => new DistributedSampler(10, { numReplicas: 0, rank: 0 })).toThrow(InvalidArgumentError);
    expect(() => new DistributedSampler(10, { numReplicas: 1, rank: 0 }).setEpoch(1.5)).toThrow(InvalidArgumentError);
  });
});
