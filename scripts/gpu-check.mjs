#!/usr/bin/env node
// The one prepared script for the lent GPU machine (../shared/device/README.md).
//
//   . .device/env.sh && node scripts/gpu-check.mjs 2>&1 | tee $OUT/gpu.log
//   node scripts/gpu-check.mjs --dry-run      # here: say what it would do, run what needs no GPU
//
// Steps, in order (each one's outcome is printed; exit status 1 if any failed,
// 2 when there is no usable CUDA driver, which is named):
//   1. addon      load dist/ and the native addon, print its build info
//   2. abi        compile test/abi/abiCheck.cc against cuda.h (CUDA_HOME or
//                 /usr/local/cuda) and, when RINGTREE_NCCL_INCLUDE is set, nccl.h;
//                 run it (our enum values, ncclConfig_t layout and initializer)
//   3. probe      load the real CUDA driver and NCCL; print GPUs, driver, NCCL
//   4. gpu-tests  RINGTREE_EXPECT_GPU=1 vitest run test/cuda.test.ts where vitest is
//                 installed; else its real-GPU checks directly: test/workers/gpu-real.mjs
//                 (DeviceArray round trips and views, every collective x dtype x op on a
//                 one-rank communicator vs the CPU engine) and, with NCCL 2.30+, two ranks
//                 on the one GPU (NCCL_MULTI_RANK_GPU_ENABLE=1): collectives, p2p, a
//                 killed rank, an abort
//   5. sweep      out-of-place allReduce, float32, 8 B .. 1 GiB, one rank, timed with CUDA
//                 events over ops issued back to back, vs PyTorch dist.all_reduce
//                 (bench/peers/torch_allreduce.py) on the same card; writes
//                 gpu-results.md and gpu-results.json to $OUT (or --out DIR)
//
// Options: --dry-run, --out DIR, --skip-sweep, --max-bytes N (default 1 GiB),
// --no-vitest (run the real-GPU checks directly even where vitest is installed).
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkScript } from './check-steps.mjs';

const { root, args, flag, option, dryRun, outDir, results, mark, step, finish, run, lastJson } =
  checkScript('gpu-check', 'usage: node scripts/gpu-check.mjs [--dry-run] [--out DIR] [--skip-sweep] [--max-bytes N] [--no-vitest]');
const maxBytes = Number(option('--max-bytes', String(1 << 30)));
const cudaHome = process.env.CUDA_HOME || process.env.CUDA_PATH || '/usr/local/cuda';
const ncclInclude = process.env.RINGTREE_NCCL_INCLUDE || '';
const sizes = [];
for (let b = 8; b <= maxBytes; b *= 2) sizes.push(b);

if (dryRun) {
  console.log(`[gpu-check] dry run: nothing that needs a GPU runs. On the GPU machine this script would:
  1. load dist/index.js and the addon (build/Release/ringtree.node)
  2. compile and run test/abi/abiCheck.cc against ${cudaHome}/include/cuda.h${ncclInclude ? ` and ${ncclInclude}/nccl.h` : ' (nccl.h: set RINGTREE_NCCL_INCLUDE; .device/env.sh does where one exists)'}
  3. load the real CUDA driver and NCCL and report them (exit 2, naming the driver, when there is none)
  4. run the real-GPU tests (vitest with RINGTREE_EXPECT_GPU=1, or test/workers/gpu-real.mjs plus two ranks on one GPU with NCCL 2.30+)
  5. time an out-of-place float32 allReduce at ${sizes.length} sizes (${sizes[0]} B .. ${sizes[sizes.length - 1]} B) with CUDA events vs PyTorch dist.all_reduce, writing ${path.join(outDir, 'gpu-results.md')}
Steps 1 and 2 run now.`);
}

// ---- 1. addon ----
let ringtree;
try {
  ringtree = await import(path.join(root, 'dist', 'index.js'));
  const i = await ringtree.info();
  step('addon', true, `ringtree ${i.version ?? ''} addon ${i.addon?.path ?? i.addon?.loaded ?? 'loaded'}`.trim());
} catch (e) {
  step('addon', false, `${e.name}: ${e.message} (build here: scripts/build-native.sh && npx tsc -p tsconfig.json; carry build/ and dist/)`);
  finish(1);
}

// ---- 2. abi ----
{
  const cudaH = path.join(cudaHome, 'include', 'cuda.h');
  const cxx = ['g++', 'c++', 'clang++'].find((c) => run(c, ['--version']).status === 0);
  if (!existsSync(cudaH)) step('abi', false, `${cudaH} not found (set CUDA_HOME)`);
  else if (!cxx) step('abi', false, 'no C++ compiler (g++/c++/clang++)');
  else {
    const exe = path.join(os.tmpdir(), `ringtree-abiCheck-${process.pid}`);
    const inc = ['-I', path.join(root, 'native'), '-I', path.join(cudaHome, 'include')];
    if (ncclInclude) inc.push('-I', ncclInclude);
    const c = run(cxx, ['-std=c++17', ...inc, path.join(root, 'test', 'abi', 'abiCheck.cc'), '-o', exe]);
    if (c.status !== 0) step('abi', false, `compile failed:\n${c.stderr}`);
    else {
      const r = run(exe, []);
      process.stdout.write(r.stdout);
      step('abi', r.status === 0, r.stdout.trim().split('\n').pop());
    }
  }
}
if (dryRun) finish();

// ---- 3. probe ----
const { probeGpu } = await import(path.join(root, 'dist', 'device.js'));
const probe = probeGpu();
if (probe.driverError) {
  step('probe', false, `no usable CUDA driver (libcuda.so.1): ${probe.driverError}`);
  finish(2);
}
const gpu = probe.info;
const devices = gpu.devices.map((d) => `${d.index}: ${d.name} (sm ${d.computeCapability}, ${(d.totalMemory / 2 ** 30).toFixed(0)} GiB, ${d.pciBusId})`);
const driverCuda = gpu.driver.version ? `${Math.floor(gpu.driver.version / 1000)}.${(gpu.driver.version % 1000) / 10}` : '?';
console.log(`[gpu-check] driver ${gpu.driver.path} (CUDA ${driverCuda}); GPUs: ${devices.join('; ') || 'none'}; NCCL ${gpu.nccl.version ?? '-'} ${gpu.nccl.path ?? probe.ncclError ?? ''}`);
step('probe', !probe.ncclError && gpu.devices.length > 0, probe.ncclError ?? (gpu.devices.length ? '' : 'the driver reports no GPU'));
const nvsmi = run('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader']);
const card = nvsmi.status === 0 ? nvsmi.stdout.trim() : gpu.devices[0]?.name ?? '?';

// ---- 4. gpu-tests ----
const expectEnv = { ...process.env, RINGTREE_EXPECT_GPU: '1' };
if (!flag('--no-vitest') && existsSync(path.join(root, 'node_modules', 'vitest'))) {
  const v = run(process.execPath, [path.join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', 'test/cuda.test.ts'], { env: expectEnv, timeout: 600_000 });
  process.stdout.write(v.stdout.slice(-6000));
  step('gpu-tests (vitest, RINGTREE_EXPECT_GPU=1)', v.status === 0, v.status === 0 ? '' : v.stderr.slice(-3000));
} else {
  const g = run(process.execPath, [path.join(root, 'test', 'workers', 'gpu-real.mjs')], { env: expectEnv, timeout: 300_000 });
  const r = lastJson(g.stdout);
  step('gpu-tests: one rank (test/workers/gpu-real.mjs)', r?.ok === true,
    r ? `${r.checks} checks, ${r.failureCount ?? r.failures.length} failed${r.failures.length ? `: ${JSON.stringify(r.failures.slice(0, 10))}` : ''}` : `no result (exit ${g.status} ${g.signal ?? ''}): ${g.stderr.slice(-2000)}`);
  if ((gpu.nccl.versionCode ?? 0) >= 23000) {
    const launch = (n, env) => {
      const l = run(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n), path.join(root, 'test', 'workers', 'cuda-rank.mjs')],
        { env: { ...expectEnv, NCCL_MULTI_RANK_GPU_ENABLE: '1', CASE_TIMEOUT_MS: '60000', ...env }, timeout: 180_000 });
      return l.stdout.split('\n').filter((x) => x.includes('{"rank"')).map((x) => JSON.parse(x.replace(/^\[rank \d+\] /, ''))).sort((a, b) => a.rank - b.rank);
    };
    const problems = [];
    const c = launch(2, { CUDA_CASE: 'collectives' });
    if (c.length !== 2 || c.some((r) => r.fatal || JSON.stringify(r.sum) !== '[3,20,200]' || JSON.stringify(r.gather) !== '[7,1,7,1]')) problems.push(`collectives: ${JSON.stringify(c)}`);
    const p = launch(2, { CUDA_CASE: 'p2p' });
    if (p.length !== 2 || JSON.stringify(p.map((r) => r.shift)) !== '[[8],[1]]' || JSON.stringify(p[1].recv) !== '[1,2,3]') problems.push(`p2p: ${JSON.stringify(p)}`);
    const k = launch(2, { CUDA_CASE: 'peerLoss' });
    if (k[0]?.error?.name !== 'PeerLostError') problems.push(`killed rank: ${JSON.stringify(k)}`);
    const a = launch(2, { CUDA_CASE: 'abort' });
    if (a[0]?.error?.name !== 'AbortedError') problems.push(`abort: ${JSON.stringify(a)}`);
    step('gpu-tests: two ranks on one GPU (NCCL_MULTI_RANK_GPU_ENABLE=1)', problems.length === 0, problems.join('\n'));
  } else {
    step('gpu-tests: two ranks on one GPU', null, `NCCL ${gpu.nccl.version} < 2.30 refuses two ranks on one GPU`);
  }
}

// ---- 5. sweep ----
if (flag('--skip-sweep')) {
  step('sweep', null, '--skip-sweep');
  finish();
}
mkdirSync(outDir, { recursive: true });
const iterationsFor = (bytes) => Math.max(5, Math.min(200, Math.floor((2 * 2 ** 30) / bytes)));
const ours = [];
try {
  const { init, DeviceArray } = ringtree;
  const comm = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
  for (const bytes of sizes) {
    const n = bytes / 4;
    const x = DeviceArray.alloc('float32', n);
    const y = DeviceArray.alloc('float32', n);
    await x.fill(1);
    await comm.timedDeviceAllReduce(x, y, 5);  // warm-up
    const iters = iterationsFor(bytes);
    const ms = await comm.timedDeviceAllReduce(x, y, iters);
    await comm.timedDeviceAllReduce(x, x, 5);  // warm-up, in place
    const inPlaceMs = await comm.timedDeviceAllReduce(x, x, iters);
    ours.push({ bytes, iters, us: (ms * 1000) / iters, inPlaceUs: (inPlaceMs * 1000) / iters });
    x.dispose();
    y.dispose();
  }
  await comm.destroy();
  step('sweep: ringtree', true, `${ours.length} sizes`);
} catch (e) {
  step('sweep: ringtree', false, `${e.name}: ${e.message}`);
}
let torch = [];
let torchMeta = null;
{
  const py = run('python3', [path.join(root, 'bench', 'peers', 'torch_allreduce.py'), '--sizes', sizes.join(',')], { timeout: 600_000 });
  const rows = py.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
  torch = rows.filter((r) => r.bytes !== undefined);
  torchMeta = rows.find((r) => r.torch) ?? null;
  step('sweep: PyTorch peer', py.status === 0 && torch.length === sizes.length, py.status === 0 ? (torchMeta ? `torch ${torchMeta.torch}, NCCL ${torchMeta.nccl}` : '') : (py.error?.message ?? py.stderr.trim().split('\n').slice(-2).join(' | ')));
}
const gbps = (bytes, us) => (us > 0 ? (bytes / (us * 1e-6) / 1e9).toFixed(2) : '-');
const fmtBytes = (b) => (b >= 2 ** 30 ? `${b / 2 ** 30} GiB` : b >= 2 ** 20 ? `${b / 2 ** 20} MiB` : b >= 1024 ? `${b / 1024} KiB` : `${b} B`);
const lines = [
  '# GPU results: one-rank out-of-place allReduce vs PyTorch',
  '',
  `- Date: ${new Date().toISOString()}`,
  `- Command: \`. .device/env.sh && node scripts/gpu-check.mjs${args.length ? ` ${args.join(' ')}` : ''}\``,
  `- Card: ${card}; CUDA driver ${gpu.driver.path} (supports CUDA ${driverCuda})`,
  `- ringtree NCCL: ${gpu.nccl.version} (${gpu.nccl.path}); PyTorch: ${torchMeta ? `${torchMeta.torch}, its NCCL ${torchMeta.nccl}` : 'not run'}`,
  '- ringtree: `timedDeviceAllReduce` (float32, sum), out of place and in place, ops issued back to back from the native NCCL thread (no JS per op) between two CUDA events; time per op.',
  '- PyTorch: `dist.all_reduce` (in place: PyTorch has no out-of-place form), NCCL process group, world size 1 (init_method file://), CUDA events around ops issued back to back from Python.',
  '- World size 1: NCCL copies (out of place) or has nothing to move (in place), so this measures per-op cost and copy bandwidth (algbw = bytes / time), not communication. The like-for-like ratio is PyTorch in place / ringtree in place; small-size differences are mostly the issuing loop (Python per op vs native).',
  '',
  '| size | ringtree out-of-place us | algbw GB/s | ringtree in-place us | PyTorch in-place us | PyTorch / ringtree (in place) |',
  '|---:|---:|---:|---:|---:|---:|',
];
for (const bytes of sizes) {
  const a = ours.find((r) => r.bytes === bytes);
  const b = torch.find((r) => r.bytes === bytes);
  lines.push(`| ${fmtBytes(bytes)} | ${a ? a.us.toFixed(2) : '-'} | ${a ? gbps(bytes, a.us) : '-'} | ${a ? a.inPlaceUs.toFixed(2) : '-'} | ${b ? b.us.toFixed(2) : '-'} | ${a && b ? (b.us / a.inPlaceUs).toFixed(2) : '-'} |`);
}
lines.push('', '## Checks', '', ...results.map((r) => `- ${r.name}: ${mark(r.ok)}${r.detail ? ` (${r.detail.split('\n')[0]})` : ''}`), '');
writeFileSync(path.join(outDir, 'gpu-results.md'), lines.join('\n'));
writeFileSync(path.join(outDir, 'gpu-results.json'), JSON.stringify({ card, gpu, torch: torchMeta, ringtree: ours, pytorch: torch, checks: results }, null, 2));
console.log(lines.join('\n'));
console.log(`[gpu-check] wrote ${path.join(outDir, 'gpu-results.md')}`);
finish();
