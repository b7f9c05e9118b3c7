// Rank for test/streamingOutput.test.ts: out-of-place allreduces and in-place
// broadcasts large enough (>= 8 MiB) that results are written with
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
console.log(comm.rank, 'nt ok', ok);
await comm.destroy();
