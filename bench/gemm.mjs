#!/usr/bin/env node
// GEMM (CPU): sgemm/dgemm through ringtree against OpenBLAS called directly
// from a small C program (bench/peers/gemm_openblas.c, compiled here with
// `cc` when present) and against numpy's matmul (bench/peers/gemm_numpy.py,
// when python3 has numpy; numpy brings its own OpenBLAS build), in the same
// run, with the same OPENBLAS_NUM_THREADS.
// Square row-major C = A @ B (alpha 1, beta 0); times are medians of --reps
// timed repetitions of back-to-back calls (this machine is shared and noisy).
//
//   npx tsc -p tsconfig.json && node bench/gemm.mjs [--sizes 64,256,1024,2048,4096] [--reps 5]
//       [--threads N] [--fallback] [--json out.json]
//
// ratio = ringtree GFLOP/s / OpenBLAS-direct GFLOP/s (target >= 0.95 at n >= 1024);
// np = ringtree GFLOP/s / numpy GFLOP/s (information: another OpenBLAS build).
// Overhead per call at n = 64 = ringtree time per call - direct time per call,
// for the async gemm() (thread hop + Promise) and for gemmSync().
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    sizes: { type: 'string', default: '64,256,1024,2048,4096' },
    reps: { type: 'string', default: '5' },
    threads: { type: 'string' },
    fallback: { type: 'boolean', default: false },
    json: { type: 'string' },
    'target-ms': { type: 'string', default: '300' },
  },
});
// Both sides read OPENBLAS_NUM_THREADS when OpenBLAS loads: set it before ringtree loads it.
if (values.threads) process.env.OPENBLAS_NUM_THREADS = values.threads;
const { blasInfo, gemm, gemmSync } = await import('../dist/index.js');
const { setGemmFallbackForTest } = await import('../dist/gemm.js');

const sizes = values.sizes.split(',').map(Number);
const reps = Number(values.reps);
const targetUs = Number(values['target-ms']) * 1000;
const here = path.dirname(fileURLToPath(import.meta.url));

function median(a) {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.floor(s.length / 2)];
}

function compilePeer() {
  const source = path.join(here, 'peers', 'gemm_openblas.c');
  const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'ringtree-gemm-peer-')), 'gemm_openblas');
  const cc = spawnSync('cc', ['-O2', '-o', out, source, '-ldl'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) {
    console.log(`# peer: not compiled (${cc.error ? cc.error.message : cc.stderr.trim()}); ringtree numbers only`);
    return null;
  }
  return out;
}

function runPeer(peer, type, n, iters) {
  const args = [type === 'float32' ? 's' : 'd', String(n), String(iters), '1'];
  const lib = blasInfo().vendor === 'fallback' ? null : blasInfo().library;
  if (lib) args.push(lib);
  const run = spawnSync(peer, args, { encoding: 'utf8', env: process.env });
  if (run.status !== 0) return null;
  const [, , us, threads] = run.stdout.trim().split(/\s+/);
  return { us: Number(us), threads: Number(threads) };
}

let numpyBlas = null;
/** numpy's matmul, timed in its own process: us per call, or null without python3/numpy. */
function runNumpy(type, n, iters) {
  const run = spawnSync('python3', [path.join(here, 'peers', 'gemm_numpy.py'), type === 'float32' ? 's' : 'd', String(n), String(iters)],
    { encoding: 'utf8', env: process.env, timeout: 600_000 });
  if (run.error || run.status !== 0) return null;
  const [, , us, threads, name] = run.stdout.trim().split(/\s+/);
  numpyBlas = `${name} (${threads} threads)`;
  return Number(us);
}

function makeArrays(type, n) {
  const Ctor = type === 'float32' ? Float32Array : Float64Array;
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  return { a: Ctor.from({ length: n * n }, next), b: Ctor.from({ length: n * n }, next), c: new Ctor(n * n) };
}

/** One timed repetition of `iters` back-to-back calls: microseconds per call. */
async function timeRingtreeOnce(arrays, n, iters, sync) {
  const { a, b, c } = arrays;
  const options = { m: n, n, k: n };
  const t0 = process.hrtime.bigint();
  if (sync) for (let i = 0; i < iters; i++) gemmSync(a, b, c, options);
  else for (let i = 0; i < iters; i++) await gemm(a, b, c, options);
  return Number(process.hrtime.bigint() - t0) / 1e3 / iters;
}

/**
 * Median over --reps of ringtree and of the direct peer, interleaved
 * repetition by repetition so that load from other processes on a shared
 * machine falls on both sides alike.
 */
async function measure(type, n, iters, withPeer, sync = false) {
  const arrays = makeArrays(type, n);
  await timeRingtreeOnce(arrays, n, iters, sync); // warm-up
  const ours = [], direct = [], numpy = [];
  let threads = null;
  for (let r = 0; r < reps; r++) {
    if (withPeer) {
      const d = runPeer(peer, type, n, iters);
      if (d) {
        direct.push(d.us);
        threads = d.threads;
      }
    }
    if (withPeer && haveNumpy) {
      const us = runNumpy(type, n, iters);
      if (us !== null) numpy.push(us);
    }
    ours.push(await timeRingtreeOnce(arrays, n, iters, sync));
  }
  return { us: median(ours), directUs: direct.length ? median(direct) : null, numpyUs: numpy.length ? median(numpy) : null, threads };
}

/** Calls per timed repetition so one repetition takes about --target-ms. */
async function itersFor(type, n) {
  const { a, b, c } = makeArrays(type, n);
  const t0 = process.hrtime.bigint();
  gemmSync(a, b, c, { m: n, n, k: n });
  const us = Number(process.hrtime.bigint() - t0) / 1e3;
  return Math.max(1, Math.min(5000, Math.round(targetUs / Math.max(us, 1))));
}

const gflops = (n, us) => (2 * n ** 3) / (us * 1e3);
const blas = blasInfo();
const peer = blas.vendor === 'openblas' ? compilePeer() : null;
const haveNumpy = peer !== null && runNumpy('float32', 8, 1) !== null;
console.log(`# ringtree GEMM (CPU): ${blas.vendor} ${blas.library}, ${blas.threads} thread(s)${blas.config ? ` [${blas.config}]` : ''}`);
console.log(`# square row-major C = A @ B, median of ${reps}; peers: OpenBLAS direct from C${peer ? '' : ' (not available)'}, ` +
  `numpy ${haveNumpy ? `${numpyBlas}` : '(not available)'}; ${os.cpus().length} CPUs, Node ${process.version}`);
console.log('#  type      n  iters   ringtree(us)  GFLOP/s    direct(us)  GFLOP/s   ratio     numpy(us)  GFLOP/s      np');
const rows = [];
for (const type of ['float32', 'float64']) {
  for (const n of sizes) {
    const iters = await itersFor(type, n);
    const measured = await measure(type, n, iters, peer !== null);
    const us = measured.us;
    const row = { type, n, iters, ringtreeUs: us, ringtreeGflops: gflops(n, us), directUs: measured.directUs,
      directGflops: measured.directUs === null ? null : gflops(n, measured.directUs), directThreads: measured.threads,
      numpyUs: measured.numpyUs, numpyGflops: measured.numpyUs === null ? null : gflops(n, measured.numpyUs) };
    row.ratio = row.directGflops === null ? null : row.ringtreeGflops / row.directGflops;
    row.numpyRatio = row.numpyGflops === null ? null : row.ringtreeGflops / row.numpyGflops;
    if (n === 64) row.syncUs = (await measure(type, n, iters, false, true)).us;
    rows.push(row);
    const f = (x, w, d = 1) => (x === null ? '-' : x.toFixed(d)).padStart(w);
    console.log(`  ${type.padEnd(8)}${String(n).padStart(5)}${String(iters).padStart(7)}${f(us, 15)}${f(row.ringtreeGflops, 9)}${f(row.directUs, 14)}${f(row.directGflops, 9)}${f(row.ratio, 8, 3)}` +
      `${f(row.numpyUs, 14)}${f(row.numpyGflops, 9)}${f(row.numpyRatio, 8, 3)}`);
  }
}
for (const row of rows.filter((r) => r.n === 64 && r.directUs !== null)) {
  console.log(`# overhead per call at n = 64 (${row.type}): gemm() ${(row.ringtreeUs - row.directUs).toFixed(1)} us, gemmSync() ${(row.syncUs - row.directUs).toFixed(1)} us over a direct call of ${row.directUs.toFixed(1)} us`);
}

const fallbackRows = [];
if (values.fallback) {
  setGemmFallbackForTest(true);
  console.log('# portable fallback (forced), same sizes up to 1024');
  for (const type of ['float32', 'float64']) {
    for (const n of sizes.filter((s) => s <= 1024)) {
      const iters = await itersFor(type, n);
      const { us } = await measure(type, n, iters, false);
      fallbackRows.push({ type, n, iters, us, gflops: gflops(n, us) });
      console.log(`  ${type.padEnd(8)}${String(n).padStart(5)}${String(iters).padStart(7)}${us.toFixed(1).padStart(15)}${gflops(n, us).toFixed(1).padStart(9)}`);
    }
  }
  setGemmFallbackForTest(false);
}
if (values.json) writeFileSync(values.json, JSON.stringify({ blas, numpyBlas, reps, rows, fallback: fallbackRows }, null, 2));
if (peer && existsSync(peer)) spawnSync('rm', ['-rf', path.dirname(peer)]);
