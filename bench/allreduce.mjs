#!/usr/bin/env node
// 2-rank (or N-rank) allreduce sweep in nccl-tests' format: size, count,
// type, redop, root, then time / algbw / busbw / #wrong for out-of-place and
// in-place. Run under the launcher:
//   node dist/cli.js launch --nproc 2 bench/allreduce.mjs [--min 8] [--max 134217728] [--iters N] [--json out.json]
// busbw = algbw * 2(n-1)/n (nccl-tests doc/PERFORMANCE.md). Times are medians
// of several timed repetitions (this machine is shared and noisy).
import { parseArgs } from 'node:util';
import { writeFileSync } from 'node:fs';
import { init } from '../dist/index.js';

const { values } = parseArgs({
  options: {
    min: { type: 'string', default: '8' },
    max: { type: 'string', default: String(128 * 1024 * 1024) },
    iters: { type: 'string' },
    reps: { type: 'string', default: '5' },
    json: { type: 'string' },
    algorithm: { type: 'string', default: 'ring' },
  },
});
const comm = await init();
const n = comm.size;
const minBytes = Number(values.min), maxBytes = Number(values.max), reps = Number(values.reps);
const busFactor = (2 * (n - 1)) / n;

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

async function timeOne(x, out, iters) {
  await comm.barrier();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) await comm.allReduce(x, { op: 'sum', out, algorithm: values.algorithm });
  return Number(process.hrtime.bigint() - t0) / 1e3 / iters; // us
}

const rows = [];
if (comm.rank === 0) {
  console.log(`# ringtree allreduce, ${n} ranks, float32 sum, algorithm ${values.algorithm}, median of ${reps}`);
  console.log('#       size         count      type   redop    root     time   algbw   busbw  #wrong     time   algbw   busbw  #wrong');
  console.log('#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)');
}
for (let bytes = minBytes; bytes <= maxBytes; bytes *= 2) {
  const count = Math.max(1, Math.floor(bytes / 4));
  const x = new Float32Array(count);
  const out = new Float32Array(count);
  const iters = values.iters ? Number(values.iters) : Math.max(2, Math.min(1000, Math.floor(2e8 / Math.max(bytes, 4096))));
  const result = {};
  for (const mode of ['oop', 'ip']) {
    // Warm-up, and a correctness check: every rank contributes rank + 1.
    x.fill(comm.rank + 1);
    await comm.allReduce(x, { op: 'sum', out: mode === 'oop' ? out : undefined, algorithm: values.algorithm });
    const got = mode === 'oop' ? out : x;
    const expect = (n * (n + 1)) / 2;
    let wrong = 0;
    for (let i = 0; i < got.length; i++) if (got[i] !== expect) wrong++;
    const times = [];
    for (let r = 0; r < reps; r++) times.push(await timeOne(x, mode === 'oop' ? out : undefined, iters));
    const us = median(times);
    const algbw = (count * 4) / us / 1e3;
    result[mode] = { time: us, algbw, busbw: algbw * busFactor, wrong };
  }
  const row = { size: count * 4, count, type: 'float', redop: 'sum', root: -1, ...result };
  rows.push(row);
  if (comm.rank === 0) {
    const f = (r) => `${r.time.toFixed(1).padStart(8)} ${r.algbw.toFixed(2).padStart(7)} ${r.busbw.toFixed(2).padStart(7)} ${String(r.wrong).padStart(7)}`;
    console.log(`${String(row.size).padStart(12)} ${String(count).padStart(13)} ${'float'.padStart(9)} ${'sum'.padStart(7)} ${'-1'.padStart(7)} ${f(result.oop)} ${f(result.ip)}`);
  }
}
if (comm.rank === 0) {
  const avg = rows.reduce((s, r) => s + r.oop.busbw + r.ip.busbw, 0) / (2 * rows.length);
  const wrong = rows.reduce((s, r) => s + r.oop.wrong + r.ip.wrong, 0);
  console.log(`# Out of bounds values : ${wrong} ${wrong ? 'FAILED' : 'OK'}`);
  console.log(`# Avg bus bandwidth    : ${avg.toFixed(3)}`);
  if (values.json) writeFileSync(values.json, JSON.stringify({ ranks: n, rows, average_bus_bandwidth: avg }, null, 2));
}
await comm.destroy();
