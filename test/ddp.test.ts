// DistributedDataParallel: N ranks on 1/N of each global batch reproduce one
// process on the whole batch; buckets, ordering, noSync, compression, join,
// a killed rank; and the two examples run under `ringtree launch`.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { init } from '../lib/init.js';
import type { Communicator } from '../lib/comm.js';
import { InvalidArgumentError } from '../lib/errors.js';
import { DistributedDataParallel } from '../lib/parallel/ddp.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const worker = path.join(root, 'test', 'workers', 'ddp-train.mjs');

/** Max |param - single-process param| after 5 SGD steps in float32. */
const F32_TOLERANCE = 1e-5;

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
}, 120_000);

interface Launched { status: number | null; output: string; rows: Array<Record<string, any>> }

function launch(n: number, script: string, args: string[], launcherFlags: string[] = []): Launched {
  const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n), ...launcherFlags, script, ...args],
    { cwd: root, encoding: 'utf8', timeout: 120_000 });
  const rows = run.stdout.split('\n').filter((l) => /^\[rank \d+\] \{/.test(l)).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')));
  return { status: run.status, output: run.stdout + run.stderr, rows: rows.sort((a, b) => a.rank - b.rank) };
}

function train(n: number, config: Record<string, unknown>): Array<Record<string, any>> {
  const run = launch(n, worker, [JSON.stringify(config)]);
  expect(run.status, run.output).toBe(0);
  expect(run.rows).toHaveLength(n);
  for (const r of run.rows) expect(r.error, JSON.stringify(r.error)).toBeUndefined();
  // Every rank applied the same averaged gradients: bit-identical parameters.
  expect(new Set(run.rows.map((r) => r.digest)).size, run.output).toBe(1);
  return run.rows;
}

describe('equivalence with single-process training', () => {
  for (const n of [2, 3, 4]) {
    it(`${n} ranks on ${n} x 4 samples per step match one process on the whole batch after 5 steps (|dparam| <= ${F32_TOLERANCE})`, () => {
      const rows = train(n, { mode: 'equiv' });
      expect(rows[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
      // Default caps: 852 bytes of gradients fit the 1 MiB first bucket, filled last parameter first.
      expect(rows[0]!.buckets).toEqual([[5, 4, 3, 2, 1, 0]]);
    });
  }

  it('several buckets launch in index order on every rank even when gradients are marked in registration order; gradients as bucket views', () => {
    // firstBucketCapMb 0.00005 = 52 bytes, bucketCapMb 0.0002 = 209 bytes: (bias 12 B, weight 120 B) closes bucket 0 at 132 B >= 52 B, ...
    const rows = train(4, { mode: 'equiv', bucketCapMb: 0.0002, firstBucketCapMb: 0.00005, markOrder: 'registration', views: true });
    expect(rows[0]!.buckets).toEqual([[5, 4], [3, 2], [1, 0]]);
    for (const r of rows) for (const order of r.launchOrders) expect(order).toEqual([0, 1, 2]);
    expect(rows[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
  });

  it('noSync gradient accumulation (2 micro-batches per rank) matches the whole batch, at 2 and 3 ranks', () => {
    for (const n of [2, 3]) expect(train(n, { mode: 'equiv', accumulate: 2 })[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
  });

  it('bf16 compression stays within 2e-3 of the float32 reference (and does round: > 1e-6); fp16 within 5e-4', () => {
    const bf16 = train(2, { mode: 'equiv', compression: 'bf16' })[0]!.maxDiff;
    expect(bf16).toBeLessThanOrEqual(2e-3);
    expect(bf16).toBeGreaterThan(1e-6);
    expect(train(3, { mode: 'equiv', compression: 'fp16', views: true })[0]!.maxDiff).toBeLessThanOrEqual(5e-4);
  });

  it('least squares under DistributedSampler shards converges to the known solution', () => {
    const rows = train(2, { mode: 'lstsq' });
    const want = [1.5, -2, 0.5, 3, -1];
    rows[0]!.w.forEach((w: number, i: number) => expect(Math.abs(w - want[i]!)).toBeLessThan(1e-4));
    expect(Math.abs(rows[0]!.b - 0.25)).toBeLessThan(1e-4);
  });
});

describe('join(): uneven inputs', () => {
  it('ranks with 5, 4, 3 batches: joined ranks shadow with zeros; divideByInitialWorldSize (default) matches the reference scaled by active/size', () => {
    const rows = train(3, { mode: 'join' });
    expect(rows.map((r) => r.steps)).toEqual([5, 4, 3]);
    expect(rows[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
  });

  it('divideByInitialWorldSize: false averages over the active ranks only, with noSync steps shadowed too', () => {
    const rows = train(3, { mode: 'join', divideByInitialWorldSize: false, accumulate: 2 });
    expect(rows[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
  });
});

describe('failures', () => {
  it('a rank SIGKILLed at step 3 makes synchronize() reject with PeerLostError naming the bucket and its parameters on the others', () => {
    const run = launch(3, worker, [JSON.stringify({ mode: 'kill', killAt: 3 })], ['--grace-ms', '30000']);
    expect(run.status, run.output).not.toBe(0);
    expect(run.output).toMatch(/rank 2 .*SIGKILL/);
    expect(run.rows.map((r) => r.rank)).toEqual([0, 1]);
    for (const r of run.rows) {
      expect(r.step).toBe(3);
      expect(r.error.name).toBe('PeerLostError');
      expect(r.error.code).toBe('ERR_RINGTREE_PEER_LOST');
      expect(r.error.message).toMatch(/^DistributedDataParallel: allreduce of bucket 0 \(parameters 5, 4, 3, 2, 1, 0; 852 bytes\) failed: .*rank 2 \(pid \d+\) died/);
      expect(r.error.causeName).toBe('PeerLostError');
      expect(r.error.peer).toBe(2);
    }
  });
});

describe('in one process (world size 1)', () => {
  let comm: Communicator;
  beforeAll(async () => { comm = await init({ rank: 0, worldSize: 1 }); });
  afterAll(async () => { await comm.destroy(); });

  it("lays out buckets as PyTorch: reverse registration order, 1 MiB first bucket, 25 MiB after, closed once at or over the cap", async () => {
    const lengths = [10, 2_000_000, 5_000_000, 100, 300_000];
    const params = lengths.map((n) => new Float32Array(n));
    const ddp = await DistributedDataParallel.create(comm, params, lengths.map((n) => new Float32Array(n)));
    // 300 000 floats = 1.14 MiB >= 1 MiB closes bucket 0; 100 + 5e6 + 2e6 floats = 26.7 MiB >= 25 MiB closes bucket 1.
    expect(ddp.buckets.map((b) => b.paramIndices)).toEqual([[4], [3, 2, 1], [0]]);
    expect(ddp.buckets.map((b) => b.wireBytes)).toEqual([1_200_000, 28_000_400, 40]);
    expect(ddp.bucketOf).toEqual([2, 1, 1, 1, 0]);
    const custom = await DistributedDataParallel.create(comm, params, lengths.map((n) => new Float32Array(n)), { firstBucketCapMb: 50, compression: 'bf16' });
    expect(custom.buckets.map((b) => b.paramIndices)).toEqual([[4, 3, 2, 1, 0]]);
    expect(custom.buckets[0]!.wireBytes).toBe(2 * 7_300_110);
  });

  it('synchronize() at world size 1 leaves gradients as they are, noSync() skips, and misuse is an InvalidArgumentError', async () => {
    const p = [new Float32Array([1, 2]), new Float32Array([3])];
    const g = [new Float32Array([0.5, -1]), new Float32Array([4])];
    const ddp = await DistributedDataParallel.create(comm, p, g);
    ddp.markReady(1);
    expect(() => ddp.markReady(1)).toThrow(InvalidArgumentError);
    expect(() => ddp.markReady(2)).toThrow(/\[0, 1\]/);
    await ddp.synchronize();
    expect(Array.from(g[0]!)).toEqual([0.5, -1]);
    expect(Array.from(g[1]!)).toEqual([4]);
    expect(await ddp.noSync(() => 7)).toBe(7);
    ddp.markReady(0);
    await expect(ddp.noSync(() => 1)).rejects.toBeInstanceOf(InvalidArgumentError);
    await ddp.synchronize();
    await expect(DistributedDataParallel.create(comm, p, [g[0]!])).rejects.toThrow(/2 arrays but `grads` has 1/);
    await expect(DistributedDataParallel.create(comm, p, [g[0]!, new Float32Array(2)])).rejects.toThrow(/grads\[1\]` has 2 elements/);
    await expect(DistributedDataParallel.create(comm, p, g, { bucketCapMb: 0 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(DistributedDataParallel.create(comm, p, g, { compression: 'int8' as never })).rejects.toThrow(/compression/);
  });

  it('gradsAsBucketViews: grads are views into one bucket, seeded with the caller values', async () => {
    const g = [new Float32Array([1, 2]), new Float32Array([3])];
    const ddp = await DistributedDataParallel.create(comm, [new Float32Array(2), new Float32Array(1)], g, { gradsAsBucketViews: true });
    expect(ddp.grads[0]!.buffer).toBe(ddp.grads[1]!.buffer);
    expect(ddp.grads[0]).not.toBe(g[0]);
    expect(Array.from(ddp.grads[0]!)).toEqual([1, 2]);
    // Reverse registration order inside the bucket: parameter 1 first.
    expect(ddp.grads[1]!.byteOffset).toBe(0);
    expect(ddp.grads[0]!.byteOffset).toBe(4);
  });
});

describe('examples', () => {
  it('examples/ddp-mlp trains an MLP on 2 ranks: same final loss on both, lower than at the start', () => {
    const run = launch(2, path.join(root, 'examples', 'ddp-mlp', 'train.mjs'), ['--json']);
    expect(run.status, run.output).toBe(0);
    expect(run.rows).toHaveLength(2);
    const [a, b] = run.rows;
    expect(a!.finalLoss).toBeLessThan(a!.firstLoss * 0.5);
    expect(a!.digest).toBe(b!.digest);
  });

  it('examples/ddp-tfjs trains a @tensorflow/tfjs model on 2 ranks: weights equal across ranks, loss falls', () => {
    const run = launch(2, path.join(root, 'examples', 'ddp-tfjs', 'train.mjs'), ['--json']);
    expect(run.status, run.output).toBe(0);
    expect(run.rows).toHaveLength(2);
    const [a, b] = run.rows;
    expect(a!.finalLoss).toBeLessThan(a!.firstLoss * 0.5);
    expect(a!.digest).toBe(b!.digest);
  });
});
