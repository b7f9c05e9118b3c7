// 2 ranks, 32 in-place all-gathers of 1 MiB blocks, on allocHost() arrays
// and on plain ones: the messages each op sent (2 when every op ran direct:
// the offer and the "done"), and whether the data is right.
import { allocHost, init } from '../../dist/index.js';

const comm = await init();
const n = comm.size, r = comm.rank, count = 262_144;
const result = { rank: r, hugePages: comm.tuning.hugePages };
for (const kind of ['allocHost', 'plain']) {
  const y = kind === 'allocHost' ? allocHost('float32', count * n) : new Float32Array(count * n);
  comm.resetStats();
  let ok = true;
  for (let k = 0; k < 32; k++) {
    for (let i = 0; i < count; i++) y[r * count + i] = r * 1e6 + k * 1000 + (i % 1000);
    await comm.allGather(y.subarray(r * count, (r + 1) * count), y);
    for (let p = 0; p < n; p++) for (let i = 0; i < count; i += 997) if (y[p * count + i] !== p * 1e6 + k * 1000 + (i % 1000)) ok = false;
  }
  const st = comm.stats().allGather;
  result[kind] = { messagesPerOp: st.messagesSent / st.count, ok };
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
