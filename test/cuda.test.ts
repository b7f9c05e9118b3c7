// The GPU control path against the CUDA/NCCL test doubles (test/doubles),
// compiled here with `cc` into a temp dir and loaded through the real loader
// (RINGTREE_CUDA_DRIVER_PATH / RINGTREE_NCCL_PATH). Real-GPU checks live in
// scripts/gpu-check.mjs; RINGTREE_EXPECT_GPU=1 turns skips here into failures.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-doubles-'));
const fakeCuda = path.join(dir, 'libfakecuda.so');
const fakeNccl = path.join(dir, 'libfakenccl.so');
let haveCc = true;

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeCuda, path.join(root, 'test/doubles/fake_cuda.c'), '-lpthread', '-ldl']);
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeNccl, path.join(root, 'test/doubles/fake_nccl.c'), '-ldl', '-lrt']);
  } catch {
    haveCc = false;
    if (process.env.RINGTREE_EXPECT_GPU === '1') throw new Error('RINGTREE_EXPECT_GPU=1 but the test doubles could not be compiled (no cc)');
  }
}, 120_000);

/** Runs `n` ranks of cuda-rank.mjs under `ringtree launch`; `expectRows` of them print a result (a killed rank prints none). */
/** `doubles` false: the real driver and NCCL (RINGTREE_EXPECT_GPU=1 tests). */
function launch(n: number, env: Record<string, string>, expectRows = n, doubles = true): Array<Record<string, any>> {
  const libs = doubles ? { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl } : {};
  const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n), path.join(root, 'test', 'workers', 'cuda-rank.mjs')],
    { encoding: 'utf8', timeout: 90_000, env: { ...process.env, ...libs, ...env } });
  const rows = run.stdout.split('\n').filter((l) => l.includes('{"rank"')).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')));
  expect(rows, run.stdout + run.stderr).toHaveLength(expectRows);
  return rows.sort((a, b) => a.rank - b.rank);
}

function node(script: string, env: Record<string, string>): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
}

describe('GPU backend through the test doubles', () => {
  it('reports a missing driver as BackendUnavailableError naming the fix, and host arrays keep working', () => {
    const out = node(`
      import { init, DeviceArray } from './dist/index.js';
      let e1; try { DeviceArray.alloc('float32', 4); } catch (e) { e1 = e; }
      let e2; try { await init({ rank: 0, worldSize: 1, backend: 'nccl' }); } catch (e) { e2 = e; }
      const c = await init({ rank: 0, worldSize: 1 }); const x = new Float32Array([2]); await c.allReduce(x); await c.destroy();
      console.log(JSON.stringify({ e1: [e1.name, e1.message, e1.remedy], e2: e2.name, x: x[0] }));`,
    { RINGTREE_CUDA_DRIVER_PATH: path.join(dir, 'absent.so') });
    const r = JSON.parse(out);
    expect(r.e1[0]).toBe('BackendUnavailableError');
    expect(r.e1[1]).toMatch(/libcuda\.so\.1.*not found/);
    expect(r.e1[2]).toMatch(/RINGTREE_CUDA_DRIVER_PATH/);
    expect(r.e2).toBe('BackendUnavailableError');
    expect(r.x).toBe(2);
  });

  it('reports missing NCCL with the pip/system fix', () => {
    if (!haveCc) return;
    const out = node(`
      import { init } from './dist/index.js';
      try { await init({ rank: 0, worldSize: 1, backend: 'nccl' }); } catch (e) { console.log(JSON.stringify([e.name, e.message, e.remedy])); }`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: path.join(dir, 'nonexistent.so') });
    const [name, message, remedy] = JSON.parse(out);
    expect(name).toBe('BackendUnavailableError');
    expect(message).toMatch(/NCCL 2\.18\+/);
    expect(remedy).toMatch(/nvidia-nccl-cu12/);
  });

  it('DeviceArray: round trips, views, fill, device-to-device copy, dispose', () => {
    if (!haveCc) return;
    const out = node(`
      import { DeviceArray } from './dist/index.js';
      const a = await DeviceArray.fromHost(new Float64Array([1, 2, 3, 4]));
      const v = a.view(1, 2); await v.fill(9);
      const i = await DeviceArray.fromHost(new BigInt64Array([5n, 6n])); await i.fill(-7n);
      const h = DeviceArray.alloc('bfloat16', 3); await h.fill(1.5);
      const c = DeviceArray.alloc('float64', 4); await c.copyFromDevice(a);
      const r = { a: Array.from(await a.toHost()), c: Array.from(await c.toHost()), i: Array.from(await i.toHost(), String), h: Array.from(await h.toHost()) };
      a.dispose(); r.viewDisposed = v.disposed; try { await v.toHost(); } catch (e) { r.afterDispose = e.name; }
      console.log(JSON.stringify(r));`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda });
    const r = JSON.parse(out);
    expect(r.a).toEqual([1, 9, 9, 4]);
    expect(r.c).toEqual([1, 9, 9, 4]);
    expect(r.i).toEqual(['-7', '-7']);
    expect(r.h).toEqual([0x3fc0, 0x3fc0, 0x3fc0]);
    expect(r.viewDisposed).toBe(true);
    expect(r.afterDispose).toBe('InvalidArgumentError');
  });

  it('dispatches device arrays to NCCL and host arrays to the CPU engine (2 ranks)', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'collectives' });
    for (const r of rows) {
      expect(r.fatal, JSON.stringify(r)).toBeUndefined();
      expect(r.sum).toEqual([3, 20, 200]);
      expect(r.max).toEqual([3, 20, 200]);
      expect(r.bcast).toEqual([7, 1]);
      expect(r.gather).toEqual([7, 1, 7, 1]);
      expect(r.host).toBe(1);
      expect(r.mixed.name).toBe('InvalidArgumentError');
    }
    expect(rows[0]!.rsAvg).toEqual([7, 3]);
    expect(rows[1]!.rsAvg).toEqual([5, 9]);
  });

  it('device ops issued back to back keep their order (10 in-place sums, out-of-place into an array with a pending op, a copy between, a view after)', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'pipeline' });
    for (const r of rows) {
      expect(r.fatal, JSON.stringify(r)).toBeUndefined();
      expect(r.doubled).toEqual([1024, 2048, 3072]);
      expect(r.y).toEqual([2048, 4096, 6144]);
      expect(r.pipe).toEqual([5, 10, 10]);
    }
  });

  it('a collective that never completes times out, aborts NCCL and poisons the communicator', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'hang', FAKE_NCCL_HANG: '1:2' });
    for (const r of rows) {
      expect(r.error.name, JSON.stringify(r)).toBe('TimeoutError');
      expect(r.error.message).toMatch(/aborted/);
      expect(r.after.name).toBe('TimeoutError');
    }
  });

  it('names the rank that used a host array while its peers used device arrays', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'mismatch', CASE_TIMEOUT_MS: '20000' });
    expect(rows[0]!.error.name).toBe('CollectiveMismatchError');
    expect(rows[0]!.error.peer).toBe(1);
    expect(rows[1]!.error.name).toBe('AbortedError');
    expect(rows[1]!.error.message).toMatch(/rank 1 is in host/);
  });

  it('names a host-array rank across hosts too (TCP between the ranks): the error names the device op, its deadline and the remedy', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'mismatch', CASE_TIMEOUT_MS: '20000', RINGTREE_TRANSPORT: 'tcp' });
    expect(rows[0]!.error.name).toBe('CollectiveMismatchError');
    expect(rows[0]!.error.peer).toBe(1);
    expect(rows[0]!.error.message).toMatch(/\[op allReduce \(making the NCCL communicator\), rank 0, seq 1, deadline 20000 ms\]/);
    expect(rows[0]!.error.remedy).toMatch(/^Give every rank the same kind of array/);
    expect(rows[1]!.error.name).toBe('AbortedError');
    expect(rows[1]!.error.message).toMatch(/rank 1 is in host/);
  });

  it('device send/recv/sendRecv/group run as NCCL groups (2 ranks); mixed kinds, tags, dtype, overlap and bad ranks are rejected before anything moves', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'p2p' });
    for (const r of rows) expect(r.fatal, JSON.stringify(r)).toBeUndefined();
    expect(rows[1]!.recv).toEqual([1, 2, 3]);
    expect(rows.map((r) => r.shift)).toEqual([[8], [1]]);
    expect(rows.map((r) => r.recvFirst)).toEqual([[8], [1]]);
    expect(rows[0]!.group).toEqual([0, 0.5, 1, 0.5]);
    expect(rows[1]!.group).toEqual([1, 1.5, 0, 1.5]);
    for (const r of rows) {
      expect(r.mixed).toMatchObject({ name: 'InvalidArgumentError' });
      expect(r.mixed.message).toMatch(/ops\[1\]\.recv is a Float32Array/);
      expect(r.mixedHostFirst.message).toMatch(/ops\[0\]\.send is a Float32Array/);
      expect(r.tag.message).toMatch(/no tags/);
      expect(r.dtype.message).toMatch(/float32 DeviceArray but `dtype` says float64/);
      expect(r.overlap.message).toMatch(/ops\[0\]\.recv overlaps ops\[1\]/);
      expect(r.badRank.name).toBe('InvalidArgumentError');
      expect(r.sum).toEqual([12, 14, 16]);  // not poisoned: device and host ops still run
      expect(r.host).toBe(1);
    }
  });

  it('a rank SIGKILLed during a device collective: the survivor rejects with PeerLostError naming it, promptly, and stays poisoned', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'peerLoss', FAKE_NCCL_HANG: '1:2' }, 1);
    const r = rows[0]!;
    expect(r.rank).toBe(0);
    expect(r.error, JSON.stringify(r)).toMatchObject({ name: 'PeerLostError', peer: 1 });
    expect(r.ms).toBeLessThan(10_000);  // liveness, not the 20 s deadline
    expect(r.after.name).toBe('PeerLostError');
  });

  it('4 ranks: one SIGKILLed during a device collective; every survivor rejects with PeerLostError naming it, its op and deadline', () => {
    if (!haveCc) return;
    const rows = launch(4, { CUDA_CASE: 'peerLoss', FAKE_NCCL_HANG: '1:2' }, 3);
    expect(rows.map((r) => r.rank)).toEqual([0, 2, 3]);
    for (const r of rows) {
      expect(r.error, JSON.stringify(r)).toMatchObject({ name: 'PeerLostError', peer: 1 });
      expect(r.error.message).toMatch(/\[op allReduce, rank \d, seq 2, deadline 20000 ms\]/);
      expect(r.error.remedy).toMatch(/lost rank's own output/);
      expect(r.ms).toBeLessThan(10_000);
      expect(r.after.name).toBe('PeerLostError');
    }
  });

  it('abort() on one rank during a pending device collective rejects it with AbortedError on every rank', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'abort', FAKE_NCCL_HANG: '1:2' });
    for (const r of rows) {
      expect(r.error, JSON.stringify(r)).toMatchObject({ name: 'AbortedError' });
      expect(r.error.message).toMatch(/rank 1 aborted the communicator: test abort/);
      expect(r.ms).toBeLessThan(10_000);
      expect(r.hostAfter.name).toBe('AbortedError');  // the CPU side is aborted too
    }
  });

  it('split() with device arrays: each group runs its own NCCL allReduce (groups of 2 and 1), the parent keeps working', () => {
    if (!haveCc) return;
    const rows = launch(3, { CUDA_CASE: 'split' });
    for (const r of rows) expect(r.fatal, JSON.stringify(r)).toBeUndefined();
    expect(rows.map((r) => r.subSize)).toEqual([2, 1, 2]);
    expect(rows.map((r) => r.split)).toEqual([[4, 2], [2, 1], [4, 2]]);
    expect(rows.map((r) => r.splitMax)).toEqual([[4, 2], [2, 1], [4, 2]]);
    for (const r of rows) expect(r.world).toEqual([6]);
  });

  it('split() of a communicator whose NCCL side is in use goes through ncclCommSplit on every rank (color -1 too); the groups and the parent keep working', () => {
    if (!haveCc) return;
    const log = path.join(dir, 'split-nccl.log');
    const rows = launch(3, { CUDA_CASE: 'split', CASE_BACKEND: 'nccl', FAKE_NCCL_ALGO_LOG: log });
    expect(rows.map((r) => r.split), JSON.stringify(rows)).toEqual([[4, 2], [2, 1], [4, 2]]);
    for (const r of rows) expect(r.world).toEqual([6]);
    const splits = readFileSync(log, 'utf8').trim().split('\n').filter((l) => l.includes('split')).sort();
    expect(splits).toEqual(['0 split 0', '1 split 1', '2 split 0']);
    const log2 = path.join(dir, 'split-nocolor.log');
    const nc = launch(3, { CUDA_CASE: 'splitNoColor', CASE_BACKEND: 'nccl', FAKE_NCCL_ALGO_LOG: log2 });
    expect(nc.map((r) => r.isNull), JSON.stringify(nc)).toEqual([false, false, true]);
    expect(nc.map((r) => r.subRank)).toEqual([1, 0, undefined]);  // keys -rank: rank 1 first
    expect(nc[0]!.split).toEqual([3]);
    expect(nc[1]!.split).toEqual([3]);
    expect(nc.map((r) => r.world)).toEqual([[9], [9], [9]]);  // 3 + 3 + 3
    expect(readFileSync(log2, 'utf8').trim().split('\n').filter((l) => l.includes('split')).sort()).toEqual(['0 split 0', '1 split 0', '2 split -1']);
  });

  it('dispose() while an op on the array is pending: the op completes, later calls reject, the memory is freed after', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'disposePending' });
    for (const r of rows) {
      expect(r.fatal, JSON.stringify(r)).toBeUndefined();
      expect(r.liveBefore).toBe(2);
      expect(r.disposed).toBe(true);
      expect(r.afterDispose.name).toBe('InvalidArgumentError');
      expect(r.copyAfterDispose.name).toBe('InvalidArgumentError');
      expect(r.result).toBe(3);
      expect(r.liveAfter).toBe(0);  // cuMemFree ran for both arrays
    }
  });

  it('FAKE_NCCL_FAIL=1:init (first device op): rank 1 gets a typed error, rank 0 PeerLostError once rank 1 left, nobody crashes', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'failInit', FAKE_NCCL_FAIL: '1:init' });
    expect(rows[1]!.error.name, JSON.stringify(rows)).toBe('InternalError');
    expect(rows[1]!.error.message).toMatch(/cannot make the NCCL communicator.*injected init failure/);
    expect(rows[1]!.after.name).toBe('InternalError');
    expect(rows[0]!.error).toMatchObject({ name: 'PeerLostError', peer: 1 });
    expect(rows[0]!.ms).toBeLessThan(10_000);
  });

  it('FAKE_NCCL_FAIL=1:init with init({ backend: \'nccl\' }): init rejects on both ranks with typed errors, without waiting for the deadline', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'collectives', CASE_BACKEND: 'nccl', FAKE_NCCL_FAIL: '1:init' });
    expect(rows[1]!.initError.name, JSON.stringify(rows)).toBe('InternalError');
    expect(rows[0]!.initError).toMatchObject({ name: 'PeerLostError', peer: 1 });
    expect(rows[0]!.ms).toBeLessThan(15_000);
  });

  it('FAKE_NCCL_FAIL=1:async:2: the asynchronous NCCL error rejects rank 1\'s op (PeerLostError from ncclRemoteError), rank 0 follows', () => {
    if (!haveCc) return;
    const rows = launch(2, { CUDA_CASE: 'failAsync', FAKE_NCCL_FAIL: '1:async:2' });
    for (const r of rows) expect(r.first, JSON.stringify(r)).toEqual([3]);
    expect(rows[1]!.error.name).toBe('PeerLostError');
    expect(rows[1]!.error.message).toMatch(/asynchronous error.*injected remote error/);
    expect(rows[1]!.after.name).toBe('PeerLostError');
    expect(rows[0]!.error).toMatchObject({ name: 'PeerLostError', peer: 1 });
    expect(rows[0]!.ms).toBeLessThan(10_000);
  });

  it('the real-GPU checks (test/workers/gpu-real.mjs) pass through the doubles: every collective x dtype x op on one rank vs the CPU engine, DeviceArray round trips and views', () => {
    if (!haveCc) return;
    const out = execFileSync(process.execPath, [path.join(root, 'test', 'workers', 'gpu-real.mjs')], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl },
    });
    const r = JSON.parse(out.trim().split('\n').pop()!);
    expect(r.failures).toEqual([]);
    expect(r.checks).toBeGreaterThan(1000);
  }, 120_000);

  it('an op on a view waits for pending ops on its parent allocation (copy stream vs NCCL stream)', () => {
    if (!haveCc) return;
    const out = node(`
      import { init, DeviceArray } from './dist/index.js';
      const c = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
      let stale = 0;
      for (let i = 0; i < 10; i++) {
        const n = 1 << 20;
        const x = DeviceArray.alloc('float32', n); await x.fill(0);
        const y = DeviceArray.alloc('float32', 4);
        const p1 = x.copyFrom(new Float32Array(n).fill(i + 1));      // device stream, not awaited
        const p2 = c.allReduce(x.view(n - 4, 4), { out: y });         // NCCL stream, on a view
        const p3 = x.view(0, 4).copyTo(new Float32Array(4));
        await Promise.all([p1, p2, p3]);
        if ((await y.toHost())[3] !== i + 1) stale++;
        x.dispose(); y.dispose();
      }
      console.log(JSON.stringify({ stale }));
      await c.destroy();`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl });
    expect(JSON.parse(out).stale).toBe(0);
  });

  it('AbortSignal on device ops: an already-fired signal rejects before anything moves; one fired during a hanging op aborts NCCL (AbortedError)', () => {
    if (!haveCc) return;
    const out = node(`
      import { init, DeviceArray } from './dist/index.js';
      const c = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
      const x = await DeviceArray.fromHost(new Float32Array([1]));
      const r = {};
      try { await c.allReduce(x, { signal: AbortSignal.abort() }); } catch (e) { r.early = [e.name, e.message]; }
      await c.allReduce(x);  // collective 1 (not poisoned by the early rejection)
      const t = Date.now();
      try { await c.allReduce(x, { signal: AbortSignal.timeout(300) }); } catch (e) { r.during = [e.name, e.message]; r.ms = Date.now() - t; }
      console.log(JSON.stringify(r));
      await c.destroy();`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl, FAKE_NCCL_HANG: '0:2' });
    const r = JSON.parse(out);
    expect(r.early[0]).toBe('AbortedError');
    expect(r.early[1]).toMatch(/not started/);
    expect(r.during[0]).toBe('AbortedError');
    expect(r.during[1]).toMatch(/AbortSignal fired during allReduce/);
    expect(r.ms).toBeLessThan(10_000);
  });

  it('a timed device allReduce (CUDA events around back-to-back ops) returns GPU milliseconds and the right result', () => {
    if (!haveCc) return;
    const out = node(`
      import { init, DeviceArray } from './dist/index.js';
      const comm = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
      const x = await DeviceArray.fromHost(new Float32Array(1000).fill(2)); const y = DeviceArray.alloc('float32', 1000);
      const ms = await comm.timedDeviceAllReduce(x, y, 10, { op: 'max' });
      let bad; try { await comm.timedDeviceAllReduce(x, y, 0); } catch (e) { bad = e.name; }
      console.log(JSON.stringify({ ms, y: (await y.toHost())[999], bad }));
      await comm.destroy();`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl });
    const r = JSON.parse(out);
    expect(r.ms).toBeGreaterThan(0);
    expect(r.y).toBe(2);
    expect(r.bad).toBe('InvalidArgumentError');
  });

  it('scripts/gpu-check.mjs: --dry-run explains and runs the ABI check; without a driver it exits 2 naming libcuda; through the doubles its GPU steps pass', () => {
    const script = path.join(root, 'scripts', 'gpu-check.mjs');
    const dry = spawnSync(process.execPath, [script, '--dry-run'], { cwd: root, encoding: 'utf8', timeout: 60_000 });
    expect(dry.status, dry.stdout + dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/dry run/);
    expect(dry.stdout).toMatch(/abi: ok/);
    const none = spawnSync(process.execPath, [script, '--skip-sweep', '--no-vitest'], {
      cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: path.join(dir, 'absent.so') },
    });
    expect(none.status).toBe(2);
    expect(none.stdout).toMatch(/no usable CUDA driver \(libcuda\.so\.1\)/);
    if (!haveCc) return;
    const fake = spawnSync(process.execPath, [script, '--skip-sweep', '--no-vitest'], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl, FAKE_NCCL_VERSION: '23000' },
    });
    expect(fake.status, fake.stdout + fake.stderr).toBe(0);
    expect(fake.stdout).toMatch(/one rank \(test\/workers\/gpu-real\.mjs\): ok/);
    expect(fake.stdout).toMatch(/two ranks on one GPU \(NCCL_MULTI_RANK_GPU_ENABLE=1\): ok/);
  }, 180_000);

  it('ncclAlgorithm (init and split): NCCL_ALGO is set while the communicator is made, per collective on NCCL 2.24+, and restored after', () => {
    if (!haveCc) return;
    const script = (log: string) => `
      import { readFileSync } from 'node:fs';
      import { init, DeviceArray } from './dist/index.js';
      process.env.NCCL_ALGO = 'Before';
      const r = {};
      try {
        const c = await init({ rank: 0, worldSize: 1, backend: 'nccl', ncclAlgorithm: 'tree' });
        r.after = process.env.NCCL_ALGO;
        await c.destroy();
      } catch (e) { r.tree = [e.name, e.message]; }
      const c = await init({ rank: 0, worldSize: 1 });
      const sub = await c.split(0, 0, { ncclAlgorithm: 'ring' });
      const x = await DeviceArray.fromHost(new Float32Array([1])); await sub.allReduce(x);
      r.afterSplit = process.env.NCCL_ALGO;
      try { await c.split(0, 0, { ncclAlgorithm: 'fast' }); } catch (e) { r.badSplit = e.name; }
      try { await init({ rank: 0, worldSize: 1, ncclAlgorithm: 'fast' }); } catch (e) { r.badInit = e.name; }
      await sub.destroy(); await c.destroy();
      r.log = readFileSync(${JSON.stringify(log)}, 'utf8').trim().split('\\n');
      console.log(JSON.stringify(r));`;
    const env = { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl };
    const newLog = path.join(dir, 'algo-new.log');
    const recent = JSON.parse(node(script(newLog), { ...env, FAKE_NCCL_VERSION: '22400', FAKE_NCCL_ALGO_LOG: newLog }));
    expect(recent.tree).toBeUndefined();
    expect(recent.log).toEqual(['0 allreduce:tree', '0 allreduce:ring']);
    expect(recent.after).toBe('Before');
    expect(recent.afterSplit).toBe('Before');
    expect(recent.badSplit).toBe('InvalidArgumentError');
    expect(recent.badInit).toBe('InvalidArgumentError');
    const oldLog = path.join(dir, 'algo-old.log');
    const older = JSON.parse(node(script(oldLog), { ...env, FAKE_NCCL_VERSION: '21903', FAKE_NCCL_ALGO_LOG: oldLog }));
    expect(older.tree[0]).toBe('BackendUnavailableError');
    expect(older.tree[1]).toMatch(/'tree' needs NCCL 2\.24/);
    expect(older.log).toEqual(['0 Ring']);  // 'ring' before per-collective strings: every collective
    expect(older.afterSplit).toBe('Before');
  });

  it('doctor --json reports the driver, the GPUs and NCCL, and warns when local ranks outnumber GPUs', () => {
    if (!haveCc) return;
    const out = execFileSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'doctor', '--json'], {
      cwd: root, encoding: 'utf8', timeout: 60_000,
      env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl, LOCAL_WORLD_SIZE: '64' },
    });
    const report = JSON.parse(out) as { gpu: { devices: unknown[] }; driver: Record<string, unknown>; nccl: Record<string, unknown>; warnings: string[] };
    expect(report.driver).toMatchObject({ loaded: true, path: fakeCuda, error: null });
    expect(report.driver.cudaVersion).toMatch(/^\d+\.\d+$/);
    expect(report.gpu.devices.length).toBeGreaterThan(0);
    expect(report.nccl).toMatchObject({ loaded: true, error: null });
    expect(report.nccl.version).toMatch(/^2\.\d+/);
    expect(report.warnings.join('\n')).toMatch(/64 local ranks share \d+ GPU/);
  });
});

// RINGTREE_EXPECT_GPU=1 (scripts/gpu-check.mjs on the GPU machine, or a developer's GPU host): the
// same paths against the real driver and NCCL, no doubles. Without it these are skipped; with it,
// a missing driver, GPU or NCCL fails them.
const expectGpu = process.env.RINGTREE_EXPECT_GPU === '1';
describe.skipIf(!expectGpu)('on a real GPU (RINGTREE_EXPECT_GPU=1: real driver and NCCL, no doubles)', () => {
  const realEnv = (): NodeJS.ProcessEnv => {
    const env = { ...process.env };
    // The doubles' paths must not leak in from the environment.
    for (const k of ['RINGTREE_CUDA_DRIVER_PATH', 'RINGTREE_NCCL_PATH']) if (env[k]?.includes('ringtree-doubles-')) delete env[k];
    return env;
  };

  it('one GPU: driver and NCCL load; DeviceArray round trips and views; every collective x dtype x op on a one-rank NCCL communicator equals the CPU engine', () => {
    const run = spawnSync(process.execPath, [path.join(root, 'test', 'workers', 'gpu-real.mjs')], { cwd: root, encoding: 'utf8', timeout: 300_000, env: realEnv() });
    const last = run.stdout.trim().split('\n').pop() ?? '';
    expect(last.startsWith('{'), run.stdout + run.stderr).toBe(true);
    const r = JSON.parse(last);
    expect(r.failures, JSON.stringify(r.gpu)).toEqual([]);
    expect(r.ok).toBe(true);
  }, 300_000);

  it('two ranks on the one GPU (NCCL 2.30+ with NCCL_MULTI_RANK_GPU_ENABLE=1): collectives, p2p, a killed rank, an abort', () => {
    const probe = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e',
      "import { probeGpu } from './dist/device.js'; console.log(JSON.stringify(probeGpu().info?.nccl ?? null));"],
    { cwd: root, encoding: 'utf8', env: realEnv() })) as { versionCode?: number; version?: string } | null;
    expect(probe?.versionCode, 'NCCL must load').toBeGreaterThan(0);
    if ((probe!.versionCode ?? 0) < 23000) {
      // Not a skip: NCCL before 2.30 refuses two ranks on one GPU, so there is nothing to run.
      console.log(`NCCL ${probe!.version} < 2.30: two ranks on one GPU are not possible; multi-rank behaviour is covered through the doubles`);
      return;
    }
    const env = { NCCL_MULTI_RANK_GPU_ENABLE: '1', CASE_TIMEOUT_MS: '60000' };
    const rows = launch(2, { ...env, CUDA_CASE: 'collectives' }, 2, false);
    for (const r of rows) {
      expect(r.fatal, JSON.stringify(r)).toBeUndefined();
      expect(r.sum).toEqual([3, 20, 200]);
      expect(r.gather).toEqual([7, 1, 7, 1]);
    }
    const p2p = launch(2, { ...env, CUDA_CASE: 'p2p' }, 2, false);
    expect(p2p.map((r) => r.shift)).toEqual([[8], [1]]);
    expect(p2p[1]!.recv).toEqual([1, 2, 3]);
    const lost = launch(2, { ...env, CUDA_CASE: 'peerLoss' }, 1, false);
    expect(lost[0]!.error).toMatchObject({ name: 'PeerLostError', peer: 1 });
    const aborted = launch(2, { ...env, CUDA_CASE: 'abort' }, 2, false);
    expect(aborted[0]!.error).toMatchObject({ name: 'AbortedError' });
  }, 300_000);
});

describe('ringtree bench --backend nccl (through the doubles)', () => {
  const bench = (args: string[], env: Record<string, string> = {}) => spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'bench', ...args],
    { encoding: 'utf8', timeout: 120_000, env: { ...process.env, RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl, ...env } });
  const tables = (out: string) => [...out.matchAll(/^# (\w+), algorithm (\w+)/gm)].map((m) => `${m[1]}/${m[2]}`);

  it('runs every collective on device arrays, checks the results (#wrong 0), and gives allreduce one table per NCCL algorithm', () => {
    if (!haveCc) return;
    const r = bench(['all', '--backend', 'nccl', '--nproc', '3', '-b', '4', '-e', '4K', '-f', '32', '-d', 'bfloat16', '-o', 'max', '-n', '2', '-w', '1', '--reps', '2',
      '--algo', 'ring,tree,auto'], { FAKE_NCCL_VERSION: '22703' });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/on 3 ranks \(nccl\), bfloat16 max/);
    expect(tables(r.stdout)).toEqual(['allreduce/ring', 'allreduce/tree', 'allreduce/auto', 'reducescatter/auto', 'allgather/auto', 'broadcast/auto', 'reduce/auto', 'sendrecv/p2p']);
    expect(r.stdout).toMatch(/reducescatter: 'ring' skipped: NCCL's algorithm option restricts allReduce only/);
    expect(r.stdout).toContain('# All tables: Out of bounds values : 0 OK');
  });

  it('a wrong device result is counted and exits 1; NCCL older than 2.24 drops tree with a note; -z 2 and --vs mpi are usage errors', () => {
    if (!haveCc) return;
    const wrong = bench(['allgather', '--backend', 'nccl', '--nproc', '2', '-b', '8', '-e', '8', '-n', '1', '-w', '0', '--reps', '1'], { RINGTREE_BENCH_FAULT_INJECT: 'wrong' });
    expect(wrong.status, wrong.stdout + wrong.stderr).toBe(1);
    expect(wrong.stdout).toContain('Out of bounds values : 1 FAILED');
    const old = bench(['--backend', 'nccl', '--nproc', '2', '-b', '8', '-e', '8', '-n', '1', '-w', '0', '--reps', '1'], { FAKE_NCCL_VERSION: '21903' });
    expect(old.status, old.stdout + old.stderr).toBe(0);
    expect(old.stdout).toContain("# 'tree' skipped: NCCL 2.19.3 is older than 2.24");
    expect(tables(old.stdout)).toEqual(['allreduce/ring']);
    expect(bench(['--backend', 'nccl', '-z', '2']).status).toBe(2);
    expect(bench(['--backend', 'nccl', '--vs', 'mpi']).status).toBe(2);
  });
});

describe('cuBLAS in doctor (through a fake libcublas)', () => {
  it('doctor --json finds cuBLAS and cuBLASLt (RINGTREE_CUBLAS_PATH as a folder) and reads the version', () => {
    const libDir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-cublas-'));
    try {
      execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(libDir, 'libcublas.so.12'), path.join(root, 'test/doubles/fake_cublas.c')]);
      execFileSync('cc', ['-shared', '-fPIC', '-o', path.join(libDir, 'libcublasLt.so.12'), path.join(root, 'test/doubles/fake_cublas.c')]);
    } catch {
      if (process.env.RINGTREE_EXPECT_GPU === '1') throw new Error('cannot compile the cuBLAS double (no cc)');
      return;
    }
    const out = execFileSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'doctor', '--json'], {
      cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, RINGTREE_CUBLAS_PATH: libDir },
    });
    const report = JSON.parse(out) as { cublas: Record<string, unknown> };
    expect(report.cublas).toEqual({
      loaded: true, path: path.join(libDir, 'libcublas.so.12'), version: '12.4.5', ltPath: path.join(libDir, 'libcublasLt.so.12'), error: null,
    });
    const human = execFileSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'doctor'], {
      cwd: root, encoding: 'utf8', timeout: 60_000, env: { ...process.env, RINGTREE_CUBLAS_PATH: libDir },
    });
    expect(human).toMatch(/cuBLAS 12\.4\.5/);
  });
});
