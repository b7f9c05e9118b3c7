// Rank for test/streamingOutput.test.ts: out-of-place allreduces, in-place
// broadcasts and all-gathers large enough that results are written with
// non-temporal stores, into views at odd offsets, with guard elements around them.
import { init } from '../../dist/index.js';
const comm = await init();
const n = comm.size;
let ok = true;
for (const off of [0, 1, 3]) {
  const count = (3 << 20) + 7;
  const x = new Float32Array(count).map((_, i) => (i % 101) + comm.rank);
  const outBuf = new Float32Array(count + off + 5).fill(-1);
  const out = outBuf.subarray(off, off + count);
  await comm.allReduce(x, { out, op: 'sum' });
  for (let i = 0; i < count; i++) if (out[i] !== n * (i % 101) + n * (n - 1) / 2) { ok = false; console.log('bad', off, i, out[i]); break; }
  for (let i = 0; i < off; i++) if (outBuf[i] !== -1) ok = false;
  for (let i = off + count; i < outBuf.length; i++) if (outBuf[i] !== -1) ok = false;
}
// A broadcast's receivers stream in place too; every rank roots one.
for (const off of [0, 1, 3]) {
  for (let root = 0; root < n; root++) {
    const count = (2 << 20) + 5 + off;
    const buf = new Float32Array(count + off + 5).fill(-1);
    const x = buf.subarray(off, off + count);
    for (let i = 0; i < count; i++) x[i] = comm.rank === root ? (i % 97) + root : -2;
    await comm.broadcast(x, { root });
    for (let i = 0; i < count; i++) if (x[i] !== (i % 97) + root) { ok = false; console.log('bad bcast', off, root, i, x[i]); break; }
    for (let i = 0; i < off; i++) if (buf[i] !== -1) ok = false;
    for (let i = off + count; i < buf.length; i++) if (buf[i] !== -1) ok = false;
  }
}
// An in-place all-gather streams from 32 MiB of output (2 ranks: through the slots).
for (const off of [0, 1, 3]) {
  const count = Math.ceil((32 << 20) / 4 / n) + 3 + off;
  const buf = new Float32Array(n * count + off + 5).fill(-1);
  const y = buf.subarray(off, off + n * count);
  const x = y.subarray(comm.rank * count, (comm.rank + 1) * count);
  for (let i = 0; i < count; i++) x[i] = (i % 89) + 1000 * comm.rank;
  await comm.allGather(x, y);
  for (let r = 0; r < n && ok; r++) {
    for (let i = 0; i < count; i++) if (y[r * count + i] !== (i % 89) + 1000 * r) { ok = false; console.log('bad allGather', off, r, i, y[r * count + i]); break; }
  }
  for (let i = 0; i < off; i++) if (buf[i] !== -1) ok = false;
  for (let i = off + n * count; i < buf.length; i++) if (buf[i] !== -1) ok = false;
}
console.log(comm.rank, 'nt ok', ok);
await comm.destroy();
