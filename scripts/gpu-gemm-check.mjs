#!/usr/bin/env node
// The prepared device-GEMM check for the lent GPU machine (../shared/device/README.md),
// the GPU half of issue 6. Finishes in well under 3 minutes on an H200.
//
//   . .device/env.sh && node scripts/gpu-gemm-check.mjs --out $OUT 2>&1 | tee $OUT/gpu-gemm.log
//   node scripts/gpu-gemm-check.mjs --dry-run      # here: every step through the test doubles
//
// Steps, in order (each one's outcome is printed; exit status 1 if any failed,
// 2 when there is no usable CUDA driver, which is named):
//   1. addon        load dist/ and the native addon
//   2. abi          compile test/abi/abiCheck.cc against cuda.h and cublasLt.h
//                   (RINGTREE_CUBLAS_INCLUDE, else the pip wheel's nvidia/cublas/include or
//                   nvidia/cu13/include found through python3, else beside the library
//                   folders .device/env.sh found, else CUDA_HOME/include) and run it: our cuBLASLt
//                   enum values, attribute numbers, struct layouts and signatures
//   3. probe        load the CUDA driver and cuBLAS/cuBLASLt through ringtree's own
//                   candidate list (RINGTREE_CUBLAS_PATH, system, CUDA_HOME, pip wheels)
//   4. correctness  test/workers/gemm-device-check.mjs: every dtype (and tf32) x transpose
//                   pair x odd shapes (1x1x1, 17x33x65, m/n/k = 0, 512x384x1000) x
//                   alpha/beta, ld views, batches, every epilogue x float32/float16/bfloat16,
//                   vs a float64 reference (||C-ref||/||ref|| < 1e-5 fp32, 5e-3 tf32, 1e-2
//                   bf16/f16, 1e-12 fp64), fresh random inputs, NaN-filled C with beta = 0
//   5. speed        bf16 8192^3, fp16 8192^3, tf32 4096^3, fp32 4096^3 through ringtree
//                   (gemmTimed: GEMMs back to back between CUDA events on the native
//                   stream thread) vs torch.matmul (bench/peers/torch_gemm.py, CUDA
//                   events, out= preallocated, allow_tf32 matching) on the same card,
//                   median of --reps runs of --iters calls; TFLOP/s and ringtree/torch
//                   (target >= 0.97); writes gpu-gemm-results.md and .json to --out
//
// --dry-run compiles the test doubles (test/doubles, needs cc) and runs every step
// through them: the correctness worker with --quick, the speed step at n = 64 (numbers
// meaningless), the torch peer only if python3 has torch with CUDA (else skipped).
//
// Options: --dry-run, --out DIR (default $OUT or bench/results), --skip-speed,
// --iters N (default 20), --reps N (default 7).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkScript } from './check-steps.mjs';

const check = checkScript('gpu-gemm-check', 'usage: node scripts/gpu-gemm-check.mjs [--dry-run] [--out DIR] [--skip-speed] [--iters N] [--reps N]');
const { root, args, flag, option, dryRun, outDir, results, mark, step, finish, run, lastJson } = check;
const iters = Number(option('--iters', dryRun ? '3' : '20'));
const reps = Number(option('--reps', dryRun ? '3' : '7'));
const cudaHome = process.env.CUDA_HOME || process.env.CUDA_PATH || '/usr/local/cuda';
const report = { date: new Date().toISOString(), command: `node scripts/gpu-gemm-check.mjs ${args.join(' ')}`.trim(), dryRun };
check.beforeExit = () => {
  report.checks = results;
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'gpu-gemm-results.json'), JSON.stringify(report, null, 2));
  writeFileSync(path.join(outDir, 'gpu-gemm-results.md'), markdown());
  console.log(`[gpu-gemm-check] wrote ${path.join(outDir, 'gpu-gemm-results.md')} and .json`);
  if (doublesDir) rmSync(doublesDir, { recursive: true, force: true });
};

// ---- the test doubles (dry run) ----
let doublesReady = false;
let doublesDir = null;
if (dryRun) {
  console.log(`[gpu-gemm-check] dry run: no GPU needed. The ABI check compiles against the headers found here; steps 3-5
run through the test doubles (test/doubles: host memory as device memory, a cuBLASLt that computes on the CPU),
with the correctness worker's --quick shapes and n = 64 for speed (its numbers mean nothing here).`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-doubles-'));
  doublesDir = dir;
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libfakecuda.so'), path.join(root, 'test/doubles/fake_cuda.c'), '-lpthread', '-ldl']);
    execFileSync('cc', ['-shared', '-fPIC', '-O1', '-o', path.join(dir, 'libcublas.so.12'), path.join(root, 'test/doubles/fake_cublas.c'), '-ldl', '-lm']);
    copyFileSync(path.join(dir, 'libcublas.so.12'), path.join(dir, 'libcublasLt.so.12'));
    // Set before anything loads the driver: this process and its children use the doubles.
    process.env.RINGTREE_CUDA_DRIVER_PATH = path.join(dir, 'libfakecuda.so');
    process.env.RINGTREE_CUBLAS_PATH = dir;
    doublesReady = true;
  } catch (e) {
    console.log(`[gpu-gemm-check] cannot compile the test doubles (${e.message.split('\n')[0]}): steps 3-5 are skipped`);
  }
}

// ---- 1. addon ----
let ringtree;
try {
  ringtree = await import(path.join(root, 'dist', 'index.js'));
  const i = await ringtree.info();
  step('addon', true, `ringtree ${i.version ?? ''}, addon ${i.addon?.path ?? 'loaded'}`);
} catch (e) {
  step('addon', false, `${e.name}: ${e.message} (build here: scripts/build-native.sh && npx tsc -p tsconfig.json; carry build/ and dist/)`);
  finish(1);
}

// ---- 2. abi ----
function cublasInclude() {
  const has = (d) => d && existsSync(path.join(d, 'cublasLt.h'));
  if (process.env.RINGTREE_CUBLAS_INCLUDE) return process.env.RINGTREE_CUBLAS_INCLUDE;
  // nvidia-cublas-cu12 wheels: nvidia/cublas/include; the CUDA 13 wheels: nvidia/cu13/include.
  const py = run('python3', ['-c', 'import nvidia, os; [print(os.path.join(p, s, "include")) for p in nvidia.__path__ for s in ("cublas", "cu13", "cu12")]'], { timeout: 20_000 });
  const fromPy = py.status === 0 ? py.stdout.trim().split('\n').find(has) : undefined;
  if (fromPy) return fromPy;
  for (const libDir of (process.env.RINGTREE_DEVICE_LIBDIRS ?? '').split(':').filter(Boolean)) {
    const inc = path.join(libDir, '..', 'include');
    if (has(inc)) return path.resolve(inc);
  }
  return has(path.join(cudaHome, 'include')) ? path.join(cudaHome, 'include') : '';
}
{
  const cudaH = path.join(cudaHome, 'include', 'cuda.h');
  const cxx = ['g++', 'c++', 'clang++'].find((c) => run(c, ['--version']).status === 0);
  const cublasInc = cublasInclude();
  report.cublasInclude = cublasInc || null;
  if (!existsSync(cudaH)) step('abi', false, `${cudaH} not found (set CUDA_HOME)`);
  else if (!cxx) step('abi', false, 'no C++ compiler (g++/c++/clang++)');
  else {
    const exe = path.join(os.tmpdir(), `ringtree-abiCheck-gemm-${process.pid}`);
    const inc = ['-I', path.join(root, 'native'), '-I', path.join(cudaHome, 'include')];
    if (cublasInc) inc.push('-I', cublasInc);
    if (process.env.RINGTREE_NCCL_INCLUDE) inc.push('-I', process.env.RINGTREE_NCCL_INCLUDE);
    const c = run(cxx, ['-std=c++17', ...inc, path.join(root, 'test', 'abi', 'abiCheck.cc'), '-o', exe]);
    if (c.status !== 0) step('abi', false, `compile failed:\n${c.stderr}`);
    else {
      const r = run(exe, []);
      process.stdout.write(r.stdout);
      const last = r.stdout.trim().split('\n').pop();
      report.abi = last;
      const checkedLt = /cuBLASLt part checked/.test(last ?? '');
      // Headers absent: the check stays optional here, but the GPU machine is expected to have them.
      step('abi', r.status === 0 && (checkedLt || dryRun), checkedLt ? last : `${last} (cublasLt.h not found: set RINGTREE_CUBLAS_INCLUDE)`);
    }
  }
}

// ---- 3. probe ----
const device = await import(path.join(root, 'dist', 'device.js'));
if (dryRun && !doublesReady) {
  for (const s of ['probe', 'correctness', 'speed']) step(s, null, 'no test doubles (no cc)');
  finish();
}
let gpu = null;
try {
  device.requireDriver('gpu-gemm-check');
} catch (e) {
  step('probe', false, `no usable CUDA driver (libcuda.so.1): ${e.message}`);
  finish(2);
}
try {
  device.requireCublas('gpu-gemm-check');
  gpu = device.probeGpu().info;
  const cublas = device.probeCublas();
  report.gpu = gpu.devices;
  report.driver = { path: gpu.driver.path, version: gpu.driver.version };
  report.cublas = cublas;
  const nvsmi = run('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader']);
  report.card = nvsmi.status === 0 ? nvsmi.stdout.trim() : gpu.devices[0]?.name ?? '?';
  step(dryRun ? 'probe (test doubles)' : 'probe', gpu.devices.length > 0,
    `${report.card}; driver ${gpu.driver.path} (${gpu.driver.version}); cuBLAS ${cublas?.version ?? '?'} ${cublas?.path ?? ''}, cuBLASLt ${cublas?.ltPath ?? '-'}`);
} catch (e) {
  step('probe', false, `${e.name}: ${e.message}`);
  finish();
}

// ---- 4. correctness ----
{
  const w = run(process.execPath, [path.join(root, 'test', 'workers', 'gemm-device-check.mjs'), ...(dryRun ? ['--quick'] : [])], { timeout: 150_000 });
  const r = lastJson(w.stdout);
  report.correctness = r;
  const name = dryRun ? 'correctness (test doubles)' : 'correctness';
  if (!r || r.checks === undefined) step(name, false, `no result (exit ${w.status} ${w.signal ?? ''}): ${w.stderr.slice(-2000)}`);
  else {
    step(name, r.ok === true, `${r.checks} checks, ${r.failures.length} failed, ${r.unsupported.length} combinations cuBLASLt has no algorithm for; seed ${r.seed}; ${(r.ms / 1000).toFixed(1)} s` +
      (r.failures.length ? `\n  ${r.failures.slice(0, 15).map((f) => `${f.name}: ${f.detail}`).join('\n  ')}` : ''));
    if (r.unsupported.length) console.log(`[gpu-gemm-check] unsupported by cuBLASLt:\n  ${r.unsupported.slice(0, 30).join('\n  ')}`);
  }
}

// ---- 5. speed ----
const CASES = dryRun
  ? [['bf16', 64], ['fp16', 64], ['tf32', 64], ['fp32', 64]]
  : [['bf16', 8192], ['fp16', 8192], ['tf32', 4096], ['fp32', 4096]];
const DTYPE = { bf16: 'bfloat16', fp16: 'float16', tf32: 'float32', fp32: 'float32' };
const median = (xs) => { const s = [...xs].sort((x, y) => x - y); return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2; };
const tflops = (n, ms) => (2 * n ** 3) / (ms * 1e-3) / 1e12;

/** Random values in [-1, 1) for an n x n matrix: 1 Mi fresh values tiled (enough to keep the tensor cores' power realistic). */
function randomMatrix(dtype, count) {
  const tile = Math.min(count, 1 << 20);
  const fresh = Float32Array.from({ length: tile }, () => Math.random() * 2 - 1);
  const src = dtype === 'float32' ? fresh : dtype === 'bfloat16' ? ringtree.float32ToBfloat16(fresh) : ringtree.float32ToFloat16(fresh);
  const out = dtype === 'float32' ? new Float32Array(count) : new Uint16Array(count);
  for (let at = 0; at < count; at += tile) out.set(src.subarray(0, Math.min(tile, count - at)), at);
  return out;
}

if (flag('--skip-speed')) {
  step('speed', null, '--skip-speed');
  finish();
}
report.speed = { iters, reps, ringtree: [], torch: [], torchMeta: null };
try {
  const { gemmTimed } = await import(path.join(root, 'dist', 'gemm.js'));
  for (const [name, n] of CASES) {
    const dtype = DTYPE[name];
    const a = await ringtree.DeviceArray.fromHost(randomMatrix(dtype, n * n), { dtype });
    const b = await ringtree.DeviceArray.fromHost(randomMatrix(dtype, n * n), { dtype });
    const c = ringtree.DeviceArray.alloc(dtype, n * n);
    const opts = { m: n, n, k: n, tf32: name === 'tf32' };
    await gemmTimed(a, b, c, opts, 3);  // warm-up (clocks, plan cache)
    const runs = [];
    for (let r = 0; r < reps; r++) runs.push((await gemmTimed(a, b, c, opts, iters)) / iters);
    const ms = median(runs);
    report.speed.ringtree.push({ case: name, n, ms, tflops: tflops(n, ms), runs });
    console.log(`[gpu-gemm-check] ringtree ${name} ${n}^3: ${ms.toFixed(3)} ms, ${tflops(n, ms).toFixed(1)} TFLOP/s`);
    for (const x of [a, b, c]) x.dispose();
  }
  step('speed: ringtree', true, `${CASES.length} cases, median of ${reps} x ${iters} calls`);
} catch (e) {
  step('speed: ringtree', false, `${e.name}: ${e.message}`);
}
{
  const py = run('python3', [path.join(root, 'bench', 'peers', 'torch_gemm.py'), '--cases', CASES.map(([c, n]) => `${c}:${n}`).join(','),
    '--iters', String(iters), '--reps', String(reps)], { timeout: 150_000 });
  const rows = py.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  const err = rows.find((r) => r.error)?.error ?? (py.error ? py.error.message : null);
  report.speed.torchMeta = rows.find((r) => r.torch) ?? null;
  report.speed.torch = rows.filter((r) => r.case);
  if (err && dryRun) step('speed: PyTorch peer', null, `${err} (expected here; the GPU machine has torch)`);
  else {
    step('speed: PyTorch peer', py.status === 0 && report.speed.torch.length === CASES.length,
      py.status === 0 ? `torch ${report.speed.torchMeta?.torch}, CUDA ${report.speed.torchMeta?.cuda}` : (err ?? py.stderr.trim().split('\n').slice(-3).join(' | ')));
  }
}
const ratios = [];
for (const [name, n] of CASES) {
  const ours = report.speed.ringtree.find((r) => r.case === name);
  const peer = report.speed.torch.find((r) => r.case === name);
  if (ours && peer) ratios.push({ case: name, n, ratio: ours.tflops / peer.tflops });
}
report.speed.ratios = ratios;
for (const r of ratios) console.log(`[gpu-gemm-check] ${r.case} ${r.n}^3: ringtree / torch = ${r.ratio.toFixed(3)}${r.ratio >= 0.97 ? '' : ' (below the 0.97 target)'}`);
if (!dryRun && ratios.length) {
  const low = ratios.filter((r) => r.ratio < 0.97);
  step('speed: ratio >= 0.97', low.length === 0, low.map((r) => `${r.case} ${r.ratio.toFixed(3)}`).join(', '));
}

function markdown() {
  const lines = [
    `# GPU GEMM results (issue 6)${dryRun ? ' - DRY RUN through the test doubles, numbers meaningless' : ''}`,
    '',
    `- Date: ${report.date}`,
    `- Command: \`. .device/env.sh && ${report.command}\``,
    `- Card: ${report.card ?? '-'}; driver ${report.driver?.path ?? '-'} (${report.driver?.version ?? '-'})`,
    `- cuBLAS: ${report.cublas?.version ?? '-'} ${report.cublas?.path ?? ''}; cuBLASLt ${report.cublas?.ltPath ?? '-'}; headers for the ABI check: ${report.cublasInclude ?? 'none'}`,
    `- ABI: ${report.abi ?? '-'}`,
    `- Correctness: ${report.correctness ? `${report.correctness.checks} checks, ${report.correctness.failures.length} failed, ${report.correctness.unsupported.length} unsupported by cuBLASLt (seed ${report.correctness.seed})` : '-'}`,
    '',
  ];
  if (report.speed) {
    lines.push(
      `## Speed: ringtree gemm (cuBLASLt) vs torch.matmul, ${reps} runs of ${iters} back-to-back calls, median, CUDA events`,
      '',
      `PyTorch: ${report.speed.torchMeta ? `${report.speed.torchMeta.torch} (CUDA ${report.speed.torchMeta.cuda})` : 'not run'}. tf32: ringtree \`tf32: true\`, torch \`allow_tf32 = True\`; fp32: both plain FP32.`,
      '',
      '| case | ringtree ms | ringtree TFLOP/s | torch ms | torch TFLOP/s | ringtree / torch |',
      '|---|---:|---:|---:|---:|---:|',
    );
    for (const [name, n] of CASES) {
      const o = report.speed.ringtree.find((r) => r.case === name);
      const p = report.speed.torch.find((r) => r.case === name);
      lines.push(`| ${name} ${n}^3 | ${o ? o.ms.toFixed(3) : '-'} | ${o ? o.tflops.toFixed(1) : '-'} | ${p ? p.ms.toFixed(3) : '-'} | ${p ? p.tflops.toFixed(1) : '-'} | ${o && p ? (o.tflops / p.tflops).toFixed(3) : '-'} |`);
    }
    lines.push('');
  }
  if (report.correctness?.unsupported?.length) lines.push('## Combinations cuBLASLt has no algorithm for', '', ...report.correctness.unsupported.map((u) => `- ${u}`), '');
  if (report.correctness?.failures?.length) lines.push('## Correctness failures', '', ...report.correctness.failures.slice(0, 50).map((f) => `- ${f.name}: ${f.detail}`), '');
  lines.push('## Checks', '', ...results.map((r) => `- ${r.name}: ${mark(r.ok)}${r.detail ? ` (${r.detail.split('\n')[0]})` : ''}`), '');
  return lines.join('\n');
}

finish();
