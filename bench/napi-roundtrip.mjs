#!/usr/bin/env node
// The floor under ringtree's Promise path: a bare Node-API async round trip
// (JS -> native call -> another thread -> thread-safe function -> Promise
// settles -> await resumes), measured with the cheapest async call ringtree's
// addon has: a 1x1x1 gemm (the GEMM worker thread; the multiply itself is a few
// ns). Also libuv's thread pool (crypto.randomFill of 1 byte) for reference.
// One at a time (await each) and with 256 in flight; median of 7 runs, us/op.
//   node bench/napi-roundtrip.mjs
import { randomFill } from 'node:crypto';
import { gemm } from '../dist/index.js';

const a = new Float32Array(1), b = new Float32Array(1), c = new Float32Array(1);
const shape = { m: 1, n: 1, k: 1 };
const fill = (buf) => new Promise((res, rej) => randomFill(buf, (e) => (e ? rej(e) : res())));
const one = new Uint8Array(1);

function median(v) {
  const s = [...v].sort((x, y) => x - y);
  return s[s.length >> 1];
}

async function time(label, op, inFlight, total = 4096) {
  const runs = [];
  for (let r = 0; r < 7; r++) {
    const t0 = process.hrtime.bigint();
    if (inFlight === 1) {
      for (let i = 0; i < total; i++) await op();
    } else {
      for (let i = 0; i < total; i += inFlight) {
        const batch = [];
        for (let j = 0; j < inFlight; j++) batch.push(op());
        await Promise.all(batch);
      }
    }
    runs.push(Number(process.hrtime.bigint() - t0) / 1e3 / total);
  }
  console.log(`${label.padEnd(44)} ${String(inFlight).padStart(4)} in flight  ${median(runs).toFixed(2).padStart(7)} us/op`);
}

for (let i = 0; i < 2000; i++) await gemm(a, b, c, shape); // load BLAS, warm up
await time('Node-API async (gemm 1x1x1, worker thread)', () => gemm(a, b, c, shape), 1);
await time('Node-API async (gemm 1x1x1, worker thread)', () => gemm(a, b, c, shape), 256);
await time('libuv pool (crypto.randomFill 1 B)', () => fill(one), 1);
await time('libuv pool (crypto.randomFill 1 B)', () => fill(one), 256);
