// Rank for test/streamingOutput.test.ts: two-rank allgathers with sends running
// ahead of receives, at every chunking, with the fewest slots (2); then many
// blocks above the direct threshold (pairAllGather switching paths).
import { init } from '../../dist/index.js';
const comm = await init();
let ok = true;
// Over TCP every 4-byte chunk is a frame of its own: keep that run short.
const big = process.env.RINGTREE_TRANSPORT === 'tcp' ? 10007 : 100003;
for (const count of [0, 1, 7, 1000, big]) for (const cb of [4, 12, 1000, 0]) for (const inPlace of [false, true]) {
  const y = new Int32Array(2 * count).fill(-1);
  const x = inPlace ? y.subarray(comm.rank * count, (comm.rank + 1) * count) : new Int32Array(count);
  for (let i = 0; i < count; i++) x[i] = comm.rank * 1e6 + i;
  await comm.allGather(x, y, cb ? { chunkBytes: cb } : {});
  for (let r = 0; r < 2; r++) for (let i = 0; i < count; i++) if (y[r * count + i] !== r * 1e6 + i) { ok = false; }
}
// Blocks of 64 KiB and more: pairAllGather chooses slots or direct per op
// (every 16th op is forced each way), so 70 ops cover both and the switches.
for (let i = 0; i < 70; i++) {
  const count = 16411 + (i % 5) * 4099 + (i % 7 === 3 ? 1 << 20 : 0);
  const inPlace = i % 3 !== 0;
  const y = new Int32Array(2 * count).fill(-1);
  const x = inPlace ? y.subarray(comm.rank * count, (comm.rank + 1) * count) : new Int32Array(count);
  for (let k = 0; k < count; k++) x[k] = comm.rank * 1e6 + k + i;
  await comm.allGather(x, y);
  for (let r = 0; r < 2 && ok; r++) for (let k = 0; k < count; k++) if (y[r * count + k] !== r * 1e6 + k + i) { ok = false; console.log('bad', i, r, k); break; }
}
console.log(comm.rank, 'ag ok', ok);
await comm.destroy();
