#!/usr/bin/env node
// The embedded CUDA kernels and DDP over device arrays, on the lent GPU
// (../shared/device/README.md). Prepared here, run there in well under 90 s:
//
//   . .device/env.sh && node scripts/gpu-kernels-check.mjs --out $OUT
//   node scripts/gpu-kernels-check.mjs --dry-run      # here: say what it would do, run what needs no GPU
//
// Carry dist/ and build/Release/ringtree.node built here (scripts/build-native.sh
// with nvcc, npx tsc -p tsconfig.json): the GPU machine has no Node toolchain to build.
//
// Steps, in order (each one's outcome is printed; exit status 1 if any failed,
// 2 when there is no usable CUDA driver, which is named):
//   1. addon    load dist/ and the addon; buildInfo().kernels must say embedded (nvcc ran here)
//   2. probe    the real CUDA driver, the GPU and NCCL
//   3. kernels  test/workers/kernel-checks.mjs on the GPU: every DeviceArray.convertFrom pair
//               (float32 <-> bfloat16/float16 with scales 1, 0.5, 1/3; scaled float32 copy)
//               at sizes 0, 1, 7, 1023, 65537 and 16777259 (more than the 65535 x 256 threads
//               one launch has, so the grid-stride loop runs), NaN payloads, infinities,
//               subnormals and rounding ties, views and in place, every 16-bit pattern
//               widened, float64/int64 fills: bit for bit against lib/dtype.ts on the CPU
//   4. ddp      DistributedDataParallel on a one-rank NCCL communicator (NCCL 2.28 refuses
//               two ranks on one GPU) over float32 DeviceArrays vs the same DDP over host
//               Float32Arrays on the CPU engine: 8 SGD steps of a small MLP least-squares
//               fit (6 -> 16 -> 4, ReLU), with compression none, bf16 and fp16, with
//               several buckets and with gradient views. Tolerance: 0 (bit-identical
//               parameters; at world size 1 both paths do the same float32 and 16-bit
//               roundings, the casts are exact to the bit and NCCL's one-rank sum is a copy)
//
// Options: --dry-run, --out DIR (writes gpu-kernels.json; default $OUT, else bench/results),
// --sizes LIST (kernel sizes, comma-separated).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { checkScript } from './check-steps.mjs';

const check = checkScript('gpu-kernels-check', 'usage: node scripts/gpu-kernels-check.mjs [--dry-run] [--out DIR] [--sizes 0,1,7,1023,65537,16777259]');
const { root, option, dryRun, outDir, results, step } = check;
const sizes = option('--sizes', '0,1,7,1023,65537,16777259');
let extra = {};
check.beforeExit = () => {
  if (dryRun) return;
  try {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'gpu-kernels.json'), JSON.stringify({ date: new Date().toISOString(), checks: results, ...extra }, null, 2));
    console.log(`[gpu-kernels-check] wrote ${path.join(outDir, 'gpu-kernels.json')}`);
  } catch (e) {
    console.log(`[gpu-kernels-check] could not write results: ${e.message}`);
  }
};
const { finish } = check;

if (dryRun) {
  console.log(`[gpu-kernels-check] dry run: nothing that needs a GPU runs. On the GPU machine this script would:
  1. load dist/index.js and build/Release/ringtree.node; check that buildInfo().kernels says embedded
  2. load the real CUDA driver and NCCL and report the GPU (exit 2, naming the driver, when there is none)
  3. run test/workers/kernel-checks.mjs --sizes ${sizes} on the GPU (casts, scaled copies, 8-byte fills vs lib/dtype.ts, bit for bit)
  4. train a small MLP least-squares fit for 8 steps with DistributedDataParallel on a one-rank NCCL communicator over DeviceArrays
     and over host Float32Arrays (compression none, bf16, fp16; buckets and views) and require bit-identical parameters
  writing ${path.join(outDir, 'gpu-kernels.json')}
Step 1 runs now.`);
}

// ---- 1. addon ----
let ringtree;
let kernels;
try {
  ringtree = await import(path.join(root, 'dist', 'index.js'));
  const { loadBinding } = await import(path.join(root, 'dist', 'binding.js'));
  kernels = loadBinding().buildInfo().kernels;
  step('addon', kernels?.embedded === true,
    kernels?.embedded ? `kernels embedded: ${kernels.architectures} from nvcc ${kernels.nvcc}` : `no kernels in this addon: ${kernels ? kernels.reason : 'buildInfo() has no kernels (an older addon)'}; rebuild here with nvcc (scripts/build-native.sh) and carry build/Release/ringtree.node`);
} catch (e) {
  step('addon', false, `${e.name}: ${e.message} (build here: scripts/build-native.sh && npx tsc -p tsconfig.json; carry build/ and dist/)`);
  finish(1);
}
if (dryRun) finish();

// ---- 2. probe ----
const { probeGpu } = await import(path.join(root, 'dist', 'device.js'));
const probe = probeGpu();
if (probe.driverError) {
  step('probe', false, `no usable CUDA driver (libcuda.so.1): ${probe.driverError}`);
  finish(2);
}
const gpu = probe.info;
const card = gpu.devices.map((d) => `${d.name} (sm ${d.computeCapability})`).join('; ') || 'none';
step('probe', !probe.ncclError && gpu.devices.length > 0,
  `${card}; driver ${gpu.driver.path} (version ${gpu.driver.version}); NCCL ${gpu.nccl.version ?? '-'}${probe.ncclError ? `: ${probe.ncclError}` : ''}`);

// ---- 3. kernels ----
{
  const r = spawnSync(process.execPath, [path.join(root, 'test', 'workers', 'kernel-checks.mjs'), '--sizes', sizes],
    { cwd: root, encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 });
  const line = (r.stdout ?? '').trim().split('\n').filter((l) => l.startsWith('{')).pop();
  let parsed = null;
  try { parsed = line ? JSON.parse(line) : null; } catch { parsed = null; }
  step('kernels', parsed !== null && parsed.failures.length === 0,
    parsed ? `${parsed.checks} checks at sizes ${sizes}, ${parsed.failures.length} failed${parsed.failures.length ? `: ${JSON.stringify(parsed.failures.slice(0, 8))}` : ''}`
      : `no result (exit ${r.status} ${r.signal ?? ''}): ${(r.stderr ?? '').slice(-2000)}`);
}

// ---- 4. ddp ----
const ddpRows = [];
try {
  const { init, DeviceArray, DistributedDataParallel, Sequential, Linear, ReLU, MSELoss, SGD, seededRandom } = ringtree;
  const comm = await init({ rank: 0, worldSize: 1, backend: 'nccl' });
  const IN = 6, HIDDEN = 16, OUT = 4, BATCH = 32, STEPS = 8, LR = 0.2;
  // Least squares: targets from a fixed random linear map plus a bias, inputs in [-1, 1].
  const r = seededRandom(11);
  const wTrue = Float32Array.from({ length: IN * OUT }, () => 2 * r() - 1);
  const batches = Array.from({ length: STEPS }, () => {
    const x = Float32Array.from({ length: BATCH * IN }, () => 2 * r() - 1);
    const y = new Float32Array(BATCH * OUT);
    for (let b = 0; b < BATCH; b++) for (let o = 0; o < OUT; o++) {
      let s = 0.1 * o;
      for (let i = 0; i < IN; i++) s += x[b * IN + i] * wTrue[i * OUT + o];
      y[b * OUT + o] = s;
    }
    return { x, y };
  });
  const model = () => new Sequential([new Linear(IN, HIDDEN, { seed: 3 }), new ReLU(), new Linear(HIDDEN, OUT, { seed: 4 })]);

  /** 8 steps; `device` puts DDP's params/grads on the GPU (compute stays on the host). Returns params and losses. */
  async function train(device, options) {
    const m = model();
    const loss = new MSELoss();
    let ddp;
    let dParams = null;
    let dGrads = null;
    if (device) {
      dParams = await Promise.all(m.params.map((p) => DeviceArray.fromHost(p)));
      dGrads = await Promise.all(m.grads.map((g) => DeviceArray.fromHost(g)));
      ddp = await DistributedDataParallel.create(comm, dParams, dGrads, options);
      await Promise.all(dParams.map((p, i) => p.copyTo(m.params[i])));
    } else {
      ddp = await DistributedDataParallel.create(comm, m.params, m.grads, options);
      if (options.gradsAsBucketViews) m.useGrads(ddp.grads);
    }
    // On the host with views, the model writes straight into DDP's buckets (ddp.grads).
    const opt = new SGD(m.params, device ? m.grads : ddp.grads, { lr: LR });
    const losses = [];
    for (const { x, y } of batches) {
      opt.zeroGrad();
      losses.push(loss.forward(m.forwardSync(x), y));
      m.backwardSync(loss.backward(), (i) => {
        if (device) ddp.grads[i].copyFrom(m.grads[i]).catch(() => undefined);
        ddp.markReady(i);
      });
      await ddp.synchronize();
      if (device) await Promise.all(ddp.grads.map((g, i) => g.copyTo(m.grads[i])));
      opt.step();
      if (device) await Promise.all(dParams.map((p, i) => p.copyFrom(m.params[i])));
    }
    const buckets = ddp.buckets.length;
    ddp.dispose();
    for (const a of [...(dParams ?? []), ...(dGrads ?? [])]) a.dispose();
    return { params: m.params.map((p) => Float32Array.from(p)), losses, buckets };
  }

  const problems = [];
  const uncompressed = {};
  const maxAbsDiff = (a, b) => a.reduce((m, p, i) => p.reduce((mm, v, j) => Math.max(mm, Math.abs(v - b[i][j])), m), 0);
  for (const compression of ['none', 'bf16', 'fp16']) {
    for (const layout of [{ name: 'one bucket' }, { name: 'buckets + views', bucketCapMb: 0.0003, firstBucketCapMb: 0.0001, gradsAsBucketViews: true }]) {
      const options = { compression, bucketCapMb: layout.bucketCapMb, firstBucketCapMb: layout.firstBucketCapMb, gradsAsBucketViews: layout.gradsAsBucketViews };
      const host = await train(false, options);
      const dev = await train(true, options);
      let maxDiff = 0;
      let differing = 0;
      host.params.forEach((p, i) => p.forEach((v, j) => {
        const d = Math.abs(v - dev.params[i][j]);
        if (!(d === 0 || (Number.isNaN(v) && Number.isNaN(dev.params[i][j])))) differing++;
        if (d > maxDiff) maxDiff = d;
      }));
      if (compression === 'none') uncompressed[layout.name] = host.params;
      // Compression must really round (else the bit-identity above proves little about the casts).
      const vsFloat32 = compression === 'none' ? 0 : maxAbsDiff(dev.params, uncompressed[layout.name]);
      const row = { compression, layout: layout.name, buckets: dev.buckets, maxDiff, differing, vsFloat32, firstLoss: host.losses[0], lastLoss: host.losses[STEPS - 1], deviceLastLoss: dev.losses[STEPS - 1] };
      ddpRows.push(row);
      console.log(`[gpu-kernels-check]   ddp ${compression} ${layout.name}: ${dev.buckets} bucket(s), loss ${row.firstLoss.toFixed(4)} -> ${row.lastLoss.toFixed(4)}, max |host - device| ${maxDiff}, ${differing} parameters differ${compression === 'none' ? '' : `; max |${compression} - float32| ${vsFloat32.toExponential(2)}`}`);
      if (compression !== 'none' && !(vsFloat32 > 0 && vsFloat32 < 1e-2)) problems.push(`${compression} ${layout.name}: compressed vs float32 differ by ${vsFloat32} (expected > 0 and < 1e-2)`);
      if (differing > 0) problems.push(`${compression} ${layout.name}: ${differing} parameters differ (max ${maxDiff})`);
      if (!(row.lastLoss < row.firstLoss)) problems.push(`${compression} ${layout.name}: the loss did not fall (${row.firstLoss} -> ${row.lastLoss})`);
    }
  }
  await comm.destroy();
  step('ddp', problems.length === 0, problems.length ? problems.join('; ') : `${ddpRows.length} runs of ${STEPS} steps bit-identical to the host-array DDP`);
} catch (e) {
  step('ddp', false, `${e.name}: ${e.message}`);
}
extra = { card, kernels, ddp: ddpRows };
finish();
