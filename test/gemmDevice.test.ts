// GEMM on DeviceArrays through the test doubles (test/doubles): fake_cuda.c
// (host memory as device memory, streams as threads), fake_cublas.c compiled
// as libcublas.so.12 and libcublasLt.so.12 (cuBLASLt's column-major
// semantics, every epilogue, injectable failures), fake_nccl.c for ordering
// against collectives. The same correctness worker runs on the real GPU in
// scripts/gpu-gemm-check.mjs.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-doubles-'));
const fakeCuda = path.join(dir, 'libfakecuda.so');
const fakeNccl = path.join(dir, 'libfakenccl.so');
const cublasDir = path.join(dir, 'cublas');
let haveCc = true;

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeCuda, path.join(root, 'test/doubles/fake_cuda.c'), '-lpthread', '-ldl']);
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', fakeNccl, path.join(root, 'test/doubles/fake_nccl.c'), '-ldl', '-lrt']);
    execFileSync('mkdir', ['-p', cublasDir]);
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', path.join(cublasDir, 'libcublas.so.12'), path.join(root, 'test/doubles/fake_cublas.c'), '-ldl', '-lm']);
    copyFileSync(path.join(cublasDir, 'libcublas.so.12'), path.join(cublasDir, 'libcublasLt.so.12'));
  } catch {
    haveCc = false;
    if (process.env.RINGTREE_EXPECT_GPU === '1') throw new Error('the test doubles could not be compiled (no cc)');
  }
}, 120_000);

const doubles = (): Record<string, string> => ({ RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_NCCL_PATH: fakeNccl, RINGTREE_CUBLAS_PATH: cublasDir });

function node(script: string, env: Record<string, string>): any {
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  const last = run.stdout.trim().split('\n').pop() ?? '';
  expect(last.startsWith('{'), `exit ${run.status}\n${run.stdout}\n${run.stderr}`).toBe(true);
  return JSON.parse(last);
}

describe('gemm on DeviceArrays (cuBLASLt through the test doubles)', () => {
  it('every dtype (and tf32) x transpose pair x odd shapes x alpha/beta, ld views, batches, every epilogue: matches a float64 reference; beta = 0 never reads the NaN in C; ld gaps untouched', () => {
    if (!haveCc) return;
    const run = spawnSync(process.execPath, [path.join(root, 'test', 'workers', 'gemm-device-check.mjs'), '--quick'], {
      cwd: root, encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...doubles() },
    });
    const r = JSON.parse(run.stdout.trim().split('\n').pop()!);
    expect(r.failures, run.stderr).toEqual([]);
    expect(r.unsupported).toEqual([]);
    expect(r.checks).toBeGreaterThan(1000);
    expect(run.status).toBe(0);
  }, 120_000);

  it('rejects bad input with InvalidArgumentError naming the argument, before anything reaches cuBLAS', () => {
    if (!haveCc) return;
    const log = path.join(dir, 'validation.log');
    const r = node(`
      import { DeviceArray, gemm, gemmSync } from './dist/index.js';
      const f32 = (n) => DeviceArray.alloc('float32', n);
      const a = f32(6), b = f32(6), c = f32(4), other = DeviceArray.alloc('float32', 6, { device: 1 });
      const big = f32(64), bias = f32(2), small = f32(1), h16 = DeviceArray.alloc('float16', 6);
      const mask = DeviceArray.alloc('uint8', 64), pre = f32(64), d64 = DeviceArray.alloc('float64', 6);
      const shape = { m: 2, n: 2, k: 3 };
      const out = {};
      const tryIt = async (name, f) => { try { await f(); out[name] = 'resolved'; } catch (e) { out[name] = [e.name, e.message.split('\\n')[0]]; } };
      await tryIt('mixed', () => gemm(a, new Float32Array(6), c, shape));
      await tryIt('device', () => gemm(a, other, c, shape));
      await tryIt('dtype', () => gemm(a, h16, c, shape));
      await tryIt('dtypeOption', () => gemm(a, b, c, { ...shape, dtype: 'float64' }));
      await tryIt('short', () => gemm(small, b, c, shape));
      await tryIt('negative', () => gemm(a, b, c, { ...shape, m: -1 }));
      await tryIt('lda', () => gemm(a, b, c, { ...shape, lda: 2 }));
      await tryIt('overlap', () => gemm(big.view(0, 6), b, big.view(4, 4), shape));
      await tryIt('tf32', () => gemm(h16, h16, DeviceArray.alloc('float16', 4), { ...shape, tf32: true }));
      await tryIt('hostEpilogue', () => gemm(new Float32Array(6), new Float32Array(6), new Float32Array(4), { ...shape, epilogue: 'relu' }));
      await tryIt('unknownEpilogue', () => gemm(a, b, c, { ...shape, epilogue: 'swish' }));
      await tryIt('f64Epilogue', () => gemm(d64, d64, DeviceArray.alloc('float64', 4), { ...shape, epilogue: 'relu' }));
      await tryIt('batchEpilogue', () => gemm(big, big, f32(64), { ...shape, batch: 2, epilogue: 'relu' }));
      await tryIt('noBias', () => gemm(a, b, c, { ...shape, epilogue: 'bias' }));
      await tryIt('biasShort', () => gemm(a, b, c, { ...shape, epilogue: 'bias', bias: small }));
      await tryIt('biasUnused', () => gemm(a, b, c, { ...shape, epilogue: 'relu', bias }));
      await tryIt('biasOverlap', () => gemm(a, b, c, { ...shape, epilogue: 'bias', bias: c.view(0, 2) }));
      await tryIt('noAux', () => gemm(a, b, c, { ...shape, epilogue: 'reluAux' }));
      await tryIt('auxLdMask', () => gemm(a, b, c, { ...shape, epilogue: 'reluAux', aux: mask, auxLd: 64 }));
      await tryIt('auxLdGelu', () => gemm(a, b, c, { ...shape, epilogue: 'geluAux', aux: pre, auxLd: 4 }));
      await tryIt('auxType', () => gemm(a, b, c, { ...shape, epilogue: 'reluAux', aux: pre }));
      await tryIt('auxShort', () => gemm(a, b, c, { ...shape, epilogue: 'reluAux', aux: mask.view(0, 16) }));
      await tryIt('auxAlign', () => gemm(a, b, c, { ...shape, epilogue: 'geluAux', aux: pre.view(1, 40) }));
      await tryIt('auxOverlap', () => gemm(a, b, big.view(0, 4), { ...shape, epilogue: 'geluAux', aux: big.view(0, 40) }));
      await tryIt('auxUnused', () => gemm(a, b, c, { ...shape, epilogue: 'relu', auxLd: 8 }));
      const gone = f32(6); gone.dispose();
      await tryIt('disposed', () => gemm(gone, b, c, shape));
      try { gemmSync(a, b, c, shape); out.sync = 'returned'; } catch (e) { out.sync = [e.name, e.message.split('\\n')[0]]; }
      await tryIt('valid', () => gemm(a, b, c, shape));
      console.log(JSON.stringify(out));`,
    { ...doubles(), FAKE_CUDA_DEVICES: '2', FAKE_CUBLAS_LOG: log });
    const expected: Record<string, RegExp> = {
      mixed: /`b` is a host array but `a` and `c` are DeviceArrays/,
      device: /`b` is on GPU 1 but `a` is on GPU 0/,
      dtype: /`b` holds float16 but `a` holds float32/,
      dtypeOption: /`dtype` says float64/,
      short: /`a` has 1 elements but m x k = 2 x 3/,
      negative: /`m` must be an integer/,
      lda: /`lda` \(2\) is smaller than a stored row of A/,
      overlap: /`c` overlaps `a`/,
      tf32: /`tf32` applies to float32 only/,
      hostEpilogue: /`epilogue` needs device arrays/,
      unknownEpilogue: /`epilogue` must be one of 'bias'/,
      f64Epilogue: /no float64 epilogues/,
      batchEpilogue: /needs batch 1/,
      noBias: /'bias' needs `bias`/,
      biasShort: /`bias` has 1 elements but needs n = 2/,
      biasUnused: /`bias` is given but `epilogue` 'relu' takes none/,
      biasOverlap: /`bias` overlaps `c`/,
      noAux: /'reluAux' needs `aux`: a 'uint8' DeviceArray/,
      auxLdMask: /`auxLd` \(64\) must be a multiple of 128/,
      auxLdGelu: /`auxLd` \(4\) must be a multiple of 8 and at least n = 2/,
      auxType: /`aux` holds float32 but 'reluAux' needs uint8/,
      auxShort: /`aux` has 16 elements but m = 2 rows with auxLd = 128 bits need 32 bytes/,
      auxAlign: /16-byte aligned/,
      auxOverlap: /`aux` overlaps `c`/,
      auxUnused: /`auxLd` is given but `epilogue` 'relu' takes none/,
      disposed: /disposed/,
      sync: /gemmSync takes host arrays/,
    };
    for (const [name, pattern] of Object.entries(expected)) {
      expect(r[name], name).toBeInstanceOf(Array);
      expect(r[name][0], `${name}: ${r[name][1]}`).toBe('InvalidArgumentError');
      expect(r[name][1], name).toMatch(pattern);
    }
    expect(r.valid).toBe('resolved');
    // Only the valid call reached cuBLASLt.
    expect(readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('matmul'))).toHaveLength(1);
  });

  it('without cuBLAS: BackendUnavailableError naming libcublas and the fix; host GEMM keeps working; nothing crashes', () => {
    if (!haveCc) return;
    const r = node(`
      import { DeviceArray, gemm } from './dist/index.js';
      const a = DeviceArray.alloc('float32', 1), b = DeviceArray.alloc('float32', 1), c = DeviceArray.alloc('float32', 1);
      const out = {};
      try { await gemm(a, b, c, { m: 1, n: 1, k: 1 }); } catch (e) { out.error = [e.name, e.message, e.remedy]; }
      try { await gemm(a, b, c, { m: 1, n: 1, k: 1 }); } catch (e) { out.again = e.name; }
      const h = new Float32Array(1); await gemm(new Float32Array([2]), new Float32Array([3]), h, { m: 1, n: 1, k: 1 });
      out.host = h[0];
      console.log(JSON.stringify(out));`,
    { RINGTREE_CUDA_DRIVER_PATH: fakeCuda, RINGTREE_CUBLAS_PATH: path.join(dir, 'absent-cublas') });
    expect(r.error[0]).toBe('BackendUnavailableError');
    expect(r.error[1]).toMatch(/cuBLAS\/cuBLASLt .* was not found.*Tried:/s);
    expect(r.error[1]).toMatch(/absent-cublas/);
    expect(r.error[2]).toMatch(/pip install nvidia-cublas-cu12/);
    expect(r.error[2]).toMatch(/RINGTREE_CUBLAS_PATH/);
    expect(r.again).toBe('BackendUnavailableError');
    expect(r.host).toBe(6);
  });

  it('an injected cuBLAS failure is a typed rejection, not a crash, and the device stream keeps working', () => {
    if (!haveCc) return;
    const script = `
      import { DeviceArray, gemm } from './dist/index.js';
      const a = await DeviceArray.fromHost(new Float32Array([1, 2, 3, 4, 5, 6]));
      const b = await DeviceArray.fromHost(new Float32Array([1, 0, 0, 1, 1, 1])), c = DeviceArray.alloc('float32', 4);
      const out = {};
      try { await gemm(a, b, c, { m: 2, n: 2, k: 3 }); out.first = 'resolved'; } catch (e) { out.first = [e.name, e.message.split('\\n')[0]]; }
      await c.fill(7); out.after = Array.from(await c.toHost());
      console.log(JSON.stringify(out));`;
    const exec = node(script, { ...doubles(), FAKE_CUBLAS_FAIL: 'matmul' });
    expect(exec.first[0]).toBe('InternalError');
    expect(exec.first[1]).toMatch(/cublasLtMatmul failed: CUBLAS_STATUS_EXECUTION_FAILED/);
    expect(exec.after).toEqual([7, 7, 7, 7]);
    const heur = node(script, { ...doubles(), FAKE_CUBLAS_FAIL: 'heuristic' });
    expect(heur.first[0]).toBe('InvalidArgumentError');
    expect(heur.first[1]).toMatch(/cuBLASLt has no algorithm for float32 m x n x k = 2 x 2 x 3.*epilogue none/);
    const create = node(script, { ...doubles(), FAKE_CUBLAS_FAIL: 'create' });
    expect(create.first[0]).toBe('InternalError');
    expect(create.first[1]).toMatch(/cublasLtCreate failed: CUBLAS_STATUS_NOT_INITIALIZED/);
    expect(create.after).toEqual([7, 7, 7, 7]);
  });

  it('one cuBLASLt handle per device stream with a PyTorch-sized workspace (32 MiB on sm 9.x; RINGTREE_CUBLAS_WORKSPACE_BYTES overrides); compute types per dtype, tf32 only when asked', () => {
    if (!haveCc) return;
    const script = `
      import { DeviceArray, gemm } from './dist/index.js';
      for (const dtype of ['float32', 'float64', 'float16', 'bfloat16']) {
        const a = DeviceArray.alloc(dtype, 4), b = DeviceArray.alloc(dtype, 4), c = DeviceArray.alloc(dtype, 4);
        await a.fill(1); await b.fill(1);
        await gemm(a, b, c, { m: 2, n: 2, k: 2 });
        await gemm(a, b, c, { m: 2, n: 2, k: 2, tf32: dtype === 'float32' });
      }
      console.log('{}');`;
    const log = path.join(dir, 'workspace.log');
    node(script, { ...doubles(), FAKE_CUBLAS_LOG: log });
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines.filter((l) => l === 'create')).toHaveLength(1);
    const matmuls = lines.filter((l) => l.startsWith('matmul'));
    expect(matmuls.map((l) => /compute=(\d+)/.exec(l)![1])).toEqual(['68', '77', '70', '70', '68', '68', '68', '68']);
    for (const l of matmuls) expect(l).toMatch(/workspace=33554432 /);  // the fake driver reports compute capability 9.0
    const log2 = path.join(dir, 'workspace-env.log');
    node(script, { ...doubles(), FAKE_CUBLAS_LOG: log2, RINGTREE_CUBLAS_WORKSPACE_BYTES: '1048576' });
    for (const l of readFileSync(log2, 'utf8').trim().split('\n').filter((x) => x.startsWith('matmul'))) expect(l).toMatch(/workspace=1048576 /);
  });

  it('ordering: a GEMM on a view waits for a pending collective into its parent, and later ops on its output wait for the GEMM (no awaits in between)', () => {
    if (!haveCc) return;
    const r = node(`
      import { init, DeviceArray, gemm } from './dist/index.js';
      const comm = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
      const eye = await DeviceArray.fromHost(new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]));
      let stale = 0, lateOut = 0;
      for (let i = 0; i < 10; i++) {
        const n = 1 << 20;
        const x = DeviceArray.alloc('float32', n), y = DeviceArray.alloc('float32', n);
        await x.fill(0); await y.fill(0);
        const c = DeviceArray.alloc('float32', 4), z = DeviceArray.alloc('float32', 4);
        const host = new Float32Array(4);
        const p1 = x.copyFrom(new Float32Array(n).fill(i + 1));           // device stream
        const p2 = comm.allReduce(x, { out: y });                          // NCCL stream, after the copy
        const p3 = gemm(y.view(n - 4, 4), eye, c, { m: 1, n: 4, k: 4 });   // on a view of y: after the allReduce
        const p4 = c.copyTo(host);                                         // after the GEMM
        const p5 = comm.allReduce(c, { out: z });                          // NCCL stream, after the GEMM
        const p6 = y.fill(-1);                                             // after the GEMM read y
        await Promise.all([p1, p2, p3, p4, p5, p6]);
        if (host.some((v) => v !== i + 1)) stale++;
        if ((await z.toHost()).some((v) => v !== i + 1)) lateOut++;
        for (const d of [x, y, c, z]) d.dispose();
      }
      await comm.destroy();
      console.log(JSON.stringify({ stale, lateOut }));`,
    doubles());
    expect(r).toEqual({ stale: 0, lateOut: 0 });
  });

  it('gemmTimed (benchmark hook): GEMMs back to back between CUDA events return GPU milliseconds and the right result', () => {
    if (!haveCc) return;
    const log = path.join(dir, 'timed.log');
    const r = node(`
      import { DeviceArray } from './dist/index.js';
      import { gemmTimed } from './dist/gemm.js';
      const a = await DeviceArray.fromHost(new Float32Array([1, 2, 3, 4])), b = await DeviceArray.fromHost(new Float32Array([1, 0, 0, 1]));
      const c = DeviceArray.alloc('float32', 4);
      const ms = await gemmTimed(a, b, c, { m: 2, n: 2, k: 2 }, 5);
      let bad; try { await gemmTimed(a, b, c, { m: 2, n: 2, k: 2 }, 0); } catch (e) { bad = e.name; }
      console.log(JSON.stringify({ ms, c: Array.from(await c.toHost()), bad }));`,
    { ...doubles(), FAKE_CUBLAS_LOG: log });
    expect(r.ms).toBeGreaterThan(0);
    expect(r.c).toEqual([1, 2, 3, 4]);
    expect(r.bad).toBe('InvalidArgumentError');
    expect(readFileSync(log, 'utf8').split('\n').filter((l) => l.startsWith('matmul'))).toHaveLength(6);  // warm-up + 5
  });

  it('scripts/gpu-gemm-check.mjs --dry-run runs clean here (ABI check without cuBLAS headers, the correctness worker through the doubles, the torch peer parsed)', () => {
    const out = path.join(dir, 'gpu-gemm-out');
    const run = spawnSync(process.execPath, [path.join(root, 'scripts', 'gpu-gemm-check.mjs'), '--dry-run', '--out', out], {
      cwd: root, encoding: 'utf8', timeout: 180_000,
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/dry run/);
    expect(run.stdout).toMatch(/abi: ok/);
    if (haveCc) expect(run.stdout).toMatch(/correctness \(test doubles\): ok/);
    expect(existsSync(path.join(out, 'gpu-gemm-results.md'))).toBe(true);
    rmSync(out, { recursive: true, force: true });
  }, 180_000);
});
