// DistributedDataParallel over float32 DeviceArrays, through the CUDA and NCCL
// test doubles (test/doubles): 2 ranks on device arrays reproduce the
// host-array DDP bit for bit (with and without bf16/fp16 compression, views,
// noSync, several buckets), join() on 3 ranks matches the reference, a killed
// rank surfaces from synchronize() as PeerLostError, and create() rejects
// mixed, mistyped or scattered arrays naming the argument. On a real GPU:
// scripts/gpu-kernels-check.mjs.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const worker = path.join(root, 'test', 'workers', 'ddp-train.mjs');
const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-ddp-device-'));
const fakeCuda = path.join(dir, 'libfakecuda.so');
const fakeNccl = path.join(dir, 'libfakenccl.so');
let haveCc = true;

/** Max |param - single-process param| after 5 SGD steps in float32 (as test/ddp.test.ts). */
const F32_TOLERANCE = 1e-5;

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeCuda, path.join(root, 'test/doubles/fake_cuda.c'), '-lpthread', '-ldl']);
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeNccl, path.join(root, 'test/doubles/fake_nccl.c'), '-ldl', '-lrt']);
  } catch {
    haveCc = false;
  }
}, 120_000);

const doubles = () => ({ RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl });

interface Launched { status: number | null; output: string; rows: Array<Record<string, any>> }

function launch(n: number, config: Record<string, unknown>, flags: string[] = []): Launched {
  const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n), ...flags, worker, JSON.stringify(config)],
    { cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...doubles() } });
  const rows = run.stdout.split('\n').filter((l) => /^\[rank \d+\] \{/.test(l)).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')));
  return { status: run.status, output: run.stdout + run.stderr, rows: rows.sort((a, b) => a.rank - b.rank) };
}

function train(n: number, config: Record<string, unknown>): Array<Record<string, any>> {
  const run = launch(n, config);
  expect(run.status, run.output).toBe(0);
  expect(run.rows).toHaveLength(n);
  for (const r of run.rows) expect(r.error, JSON.stringify(r.error)).toBeUndefined();
  expect(new Set(run.rows.map((r) => r.digest)).size, run.output).toBe(1);
  return run.rows;
}

function node(script: string, env: Record<string, string> = {}): any {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: root, encoding: 'utf8', env: { ...process.env, ...doubles(), ...env }, timeout: 60_000,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

describe('DDP on device arrays (2 ranks) reproduces DDP on host arrays exactly', () => {
  const cases: Array<[string, Record<string, unknown>]> = [
    ['float32, one bucket', {}],
    ['three buckets marked in registration order, gradients as bucket views', { bucketCapMb: 0.0002, firstBucketCapMb: 0.00005, markOrder: 'registration', views: true }],
    ['noSync accumulation (2 micro-batches)', { accumulate: 2 }],
    ['bf16 compression', { compression: 'bf16' }],
    ['fp16 compression, gradients as bucket views', { compression: 'fp16', views: true }],
  ];
  for (const [name, extra] of cases) {
    it(name, () => {
      if (!haveCc) return;
      const host = train(2, { mode: 'equiv', ...extra });
      const device = train(2, { mode: 'equiv', device: true, ...extra });
      for (const r of device) expect(r.onDevice).toBe(true);
      expect(device[0]!.digest).toBe(host[0]!.digest);
      expect(device[0]!.buckets).toEqual(host[0]!.buckets);
      expect(device[0]!.launchOrders).toEqual(host[0]!.launchOrders);
      const bound = extra.compression === 'bf16' ? 2e-3 : extra.compression === 'fp16' ? 5e-4 : F32_TOLERANCE;
      expect(device[0]!.maxDiff).toBeLessThanOrEqual(bound);
    });
  }
});

describe('DDP on device arrays: join, failures, validation', () => {
  it(`join() with 5, 4, 3 batches on 3 ranks matches single-process training (|dparam| <= ${F32_TOLERANCE}), both divisors, with noSync steps`, () => {
    if (!haveCc) return;
    const rows = train(3, { mode: 'join', device: true });
    expect(rows.map((r) => r.steps)).toEqual([5, 4, 3]);
    expect(rows[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
    const active = train(3, { mode: 'join', device: true, divideByInitialWorldSize: false, accumulate: 2 });
    expect(active[0]!.maxDiff).toBeLessThanOrEqual(F32_TOLERANCE);
  });

  it('a rank SIGKILLed at step 3 makes synchronize() reject with PeerLostError naming the bucket and its parameters', () => {
    if (!haveCc) return;
    const run = launch(2, { mode: 'kill', killAt: 3, device: true }, ['--grace-ms', '30000']);
    expect(run.status, run.output).not.toBe(0);
    expect(run.rows.map((r) => r.rank)).toEqual([0]);
    const r = run.rows[0]!;
    expect(r.step).toBe(3);
    expect(r.error.name, JSON.stringify(r.error)).toBe('PeerLostError');
    expect(r.error.message).toMatch(/^DistributedDataParallel: allreduce of bucket 0 \(parameters 5, 4, 3, 2, 1, 0; 852 bytes\) failed: .*rank 1/);
    expect(r.error.peer).toBe(1);
  });

  it('create() rejects mixed host/device arrays, non-float32 and arrays on different devices with InvalidArgumentError naming the argument', () => {
    if (!haveCc) return;
    const r = node(`
      import { init, DeviceArray, DistributedDataParallel } from './dist/index.js';
      const comm = await init({ rank: 0, worldSize: 1 });
      const d = (n, dtype = 'float32', device = 0) => DeviceArray.alloc(dtype, n, { device });
      const out = {};
      const attempt = async (name, params, grads, options) => {
        try { await DistributedDataParallel.create(comm, params, grads, options); out[name] = 'resolved'; } catch (e) { out[name] = [e.name, e.message]; }
      };
      await attempt('hostGrad', [d(2), d(3)], [d(2), new Float32Array(3)]);
      await attempt('deviceAfterHost', [new Float32Array(2), d(2)], [new Float32Array(2), d(2)]);
      await attempt('dtype', [d(2), d(3)], [d(2), d(3, 'float64')]);
      await attempt('device', [d(2), d(3, 'float32', 1)], [d(2), d(3, 'float32', 1)]);
      await attempt('length', [d(2)], [d(3)]);
      const gone = d(2); gone.dispose();
      await attempt('disposed', [d(2)], [gone]);
      console.log(JSON.stringify(out));
      await comm.destroy();`, { FAKE_CUDA_DEVICES: '2' });
    expect(r.hostGrad).toEqual(['InvalidArgumentError', expect.stringMatching(/expected a DeviceArray for `grads\[1\]` \(`params\[0\]` is one\), got a Float32Array: give DeviceArrays for all or host Float32Arrays for all/)]);
    expect(r.deviceAfterHost[1]).toMatch(/expected a Float32Array for `params\[1\]`, got a float32 DeviceArray: give DeviceArrays for all/);
    expect(r.dtype[1]).toMatch(/`grads\[1\]` is a float64 DeviceArray; DistributedDataParallel takes float32/);
    expect(r.device[1]).toMatch(/`params\[1\]` is on device 1 but `params\[0\]` is on device 0/);
    expect(r.length[1]).toMatch(/`grads\[0\]` has 3 elements but `params\[0\]` has 2/);
    expect(r.disposed[0]).toBe('InvalidArgumentError');
  });

  it('in one process: views are DeviceArray views into one bucket seeded with the caller values; synchronize at world size 1 keeps gradients; dispose frees the buckets', () => {
    if (!haveCc) return;
    const r = node(`
      import { init, DeviceArray, DistributedDataParallel } from './dist/index.js';
      const comm = await init({ rank: 0, worldSize: 1 });
      const g = [await DeviceArray.fromHost(new Float32Array([1, 2])), await DeviceArray.fromHost(new Float32Array([3]))];
      const p = [DeviceArray.alloc('float32', 2), DeviceArray.alloc('float32', 1)];
      const ddp = await DistributedDataParallel.create(comm, p, g, { gradsAsBucketViews: true, compression: 'bf16' });
      const out = { onDevice: ddp.onDevice, sameBuffer: ddp.grads[0].buffer === ddp.grads[1].buffer, offsets: ddp.grads.map((v) => v.byteOffset),
        seeded: [Array.from(await ddp.grads[0].toHost()), Array.from(await ddp.grads[1].toHost())] };
      ddp.markReady(1); await ddp.synchronize();
      out.afterSync = [Array.from(await ddp.grads[0].toHost()), Array.from(await ddp.grads[1].toHost())];
      ddp.dispose(); out.disposed = ddp.grads[0].disposed;
      console.log(JSON.stringify(out));
      await comm.destroy();`);
    expect(r).toEqual({ onDevice: true, sameBuffer: true, offsets: [4, 0], seeded: [[1, 2], [3]], afterSync: [[1, 2], [3]], disposed: true });
  });

  it('compression on device arrays without kernels (a build without nvcc) fails in create() with BackendUnavailableError; uncompressed DDP needs none', () => {
    if (!haveCc) return;
    const r = node(`
      import { init, DeviceArray, DistributedDataParallel } from './dist/index.js';
      const comm = await init({ rank: 0, worldSize: 1 });
      const out = {};
      try { await DistributedDataParallel.create(comm, [DeviceArray.alloc('float32', 2)], [DeviceArray.alloc('float32', 2)], { compression: 'fp16' }); }
      catch (e) { out.compressed = [e.name, e.message, e.remedy]; }
      const g = await DeviceArray.fromHost(new Float32Array([4, 5]));
      const ddp = await DistributedDataParallel.create(comm, [DeviceArray.alloc('float32', 2)], [g]);
      await ddp.synchronize(); out.plain = Array.from(await g.toHost());
      console.log(JSON.stringify(out));
      await comm.destroy();`, { RINGTREE_DISABLE_KERNELS: '1' });
    expect(r.compressed[0]).toBe('BackendUnavailableError');
    expect(r.compressed[1]).toMatch(/compression 'fp16' on device arrays needs ringtree's CUDA cast kernels/);
    expect(r.compressed[2]).toMatch(/RINGTREE_DISABLE_KERNELS/);
    expect(r.plain).toEqual([4, 5]);
  });
});
