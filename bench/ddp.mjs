#!/usr/bin/env node
// DDP weak scaling (CPU): a fixed MLP, a fixed batch per rank, one BLAS thread
// per rank; samples/s at 1 and 2 ranks, scaling efficiency, and overlap for
// several bucket sizes.
//
//   npx tsc -p tsconfig.json && node bench/ddp.mjs [--steps 20] [--warmup 3] [--batch 64]
//       [--width 1024] [--buckets default,8,1,single] [--reps 3] [--json out.json]
//
// efficiency = samples/s at 2 ranks / (2 x samples/s at 1 rank).
// overlap = allreduce time that ran before backward ended / total allreduce
// time, from per-bucket timestamps (performance.now()) on rank 0. Buckets run
// one after another on the communicator's progress thread, so bucket b is
// taken as busy from max(its launch, bucket b-1 settled) to its settle; a
// settle is seen by JS after the GEMM then running, so overlap is a slight
// underestimate. Each configuration runs --reps times, 1 and 2 ranks
// alternating, and the fastest run of each is kept (the machine is shared).
// 'single' puts every gradient in one bucket sent after
// backward (no overlap), the baseline the buckets are meant to beat.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '3' },
    batch: { type: 'string', default: '64' },
    width: { type: 'string', default: '1024' },
    buckets: { type: 'string', default: 'default,8,1,single' },
    reps: { type: 'string', default: '3' },
    json: { type: 'string' },
    worker: { type: 'string' },
  },
});
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

if (values.worker !== undefined) await worker(JSON.parse(values.worker));
else orchestrate();

function bucketOptions(name) {
  if (name === 'default') return {};
  if (name === 'single') return { bucketCapMb: 1e6, firstBucketCapMb: 1e6 };
  return { bucketCapMb: Number(name), firstBucketCapMb: Math.min(1, Number(name)) };
}

async function worker(cfg) {
  const { init, DistributedDataParallel, Sequential, Linear, GELU, MSELoss, SGD, seededRandom } = await import('../dist/index.js');
  const comm = await init();
  const W = cfg.width, B = cfg.batch, IN = W / 2, OUT = W / 2;
  const model = new Sequential([
    new Linear(IN, W, { seed: 1 }), new GELU(), new Linear(W, W, { seed: 2 }), new GELU(),
    new Linear(W, W, { seed: 3 }), new GELU(), new Linear(W, OUT, { seed: 4 }),
  ]);
  const ddp = await DistributedDataParallel.create(comm, model.params, model.grads, bucketOptions(cfg.buckets));
  const sgd = new SGD(model.params, model.grads, { lr: 1e-3 });
  const loss = new MSELoss();
  const r = seededRandom(comm.rank);
  const x = Float32Array.from({ length: B * IN }, () => 2 * r() - 1);
  const y = Float32Array.from({ length: B * OUT }, () => 2 * r() - 1);
  const overlaps = [];
  let t0 = 0;
  for (let s = 0; s < cfg.warmup + cfg.steps; s++) {
    if (s === cfg.warmup) {
      await comm.barrier();
      t0 = performance.now();
    }
    sgd.zeroGrad();
    loss.forward(await model.forward(x), y);
    await model.backward(loss.backward(), (i) => ddp.markReady(i));
    const backwardEnd = performance.now();
    await ddp.synchronize();
    sgd.step();
    if (s >= cfg.warmup) {
      let before = 0, total = 0, prevEnd = -Infinity;
      for (const b of ddp.lastStepTimings()) {
        const start = Math.max(b.launchedAt, prevEnd);
        total += b.settledAt - start;
        before += Math.max(0, Math.min(b.settledAt, backwardEnd) - start);
        prevEnd = b.settledAt;
      }
      overlaps.push({ before, total });
    }
  }
  await comm.barrier();
  const seconds = (performance.now() - t0) / 1000;
  const before = overlaps.reduce((a, o) => a + o.before, 0), total = overlaps.reduce((a, o) => a + o.total, 0);
  console.log(JSON.stringify({
    rank: comm.rank, size: comm.size, seconds, samplesPerSecond: (comm.size * B * cfg.steps) / seconds,
    overlap: total > 0 ? before / total : 0, allreduceMsPerStep: total / cfg.steps,
    buckets: ddp.buckets.length, paramBytes: model.params.reduce((n, p) => n + 4 * p.length, 0),
  }));
  await comm.destroy();
}

function orchestrate() {
  const cfgBase = { steps: Number(values.steps), warmup: Number(values.warmup), batch: Number(values.batch), width: Number(values.width) };
  const env = { ...process.env, OPENBLAS_NUM_THREADS: '1', OMP_NUM_THREADS: '1' };
  const run = (nproc, buckets) => {
    const cfg = JSON.stringify({ ...cfgBase, buckets });
    const out = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(nproc),
      path.join(here, 'ddp.mjs'), '--worker', cfg], { env, encoding: 'utf8', timeout: 600_000 });
    if (out.status !== 0) throw new Error(`launch failed (${out.status}): ${out.stdout}${out.stderr}`);
    const rows = out.stdout.split('\n').filter((l) => l.includes('{')).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')));
    return rows.find((r) => r.rank === 0);
  };
  const results = [];
  console.log(`# DDP weak scaling: MLP ${cfgBase.width / 2}-${cfgBase.width}-${cfgBase.width}-${cfgBase.width}-${cfgBase.width / 2} (GELU), batch ${cfgBase.batch}/rank, ${cfgBase.steps} timed steps, OPENBLAS_NUM_THREADS=1`);
  console.log('#  buckets   nbuckets  1 rank (samples/s)  2 ranks (samples/s)  efficiency  overlap  allreduce ms/step (2 ranks)');
  for (const b of values.buckets.split(',')) {
    let one = null, two = null;
    for (let k = 0; k < Number(values.reps); k++) {
      const a = run(1, b), c = run(2, b);
      if (!one || a.samplesPerSecond > one.samplesPerSecond) one = a;
      if (!two || c.samplesPerSecond > two.samplesPerSecond) two = c;
    }
    const efficiency = two.samplesPerSecond / (2 * one.samplesPerSecond);
    results.push({ buckets: b, one, two, efficiency });
    console.log(`  ${b.padEnd(9)} ${String(two.buckets).padStart(8)} ${one.samplesPerSecond.toFixed(1).padStart(19)} ${two.samplesPerSecond.toFixed(1).padStart(20)} ${efficiency.toFixed(3).padStart(11)} ${two.overlap.toFixed(3).padStart(8)} ${two.allreduceMsPerStep.toFixed(2).padStart(12)}`);
  }
  console.log(`# parameters: ${(results[0].one.paramBytes / 2 ** 20).toFixed(2)} MiB of float32 gradients per step`);
  if (values.json) writeFileSync(values.json, JSON.stringify({ config: cfgBase, results }, null, 2));
}
