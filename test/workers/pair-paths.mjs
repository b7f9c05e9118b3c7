// 2 ranks: 12 allreduces per case, on plain arrays and then on allocHost
// (huge-page) arrays, in place and out of place. pairAllReduce runs direct
// (the kernel reads the peer's buffers) where both ranks' arrays are on huge
// pages, else through the ring. Run with RINGTREE_DIRECT_MIN_BYTES=1 so
// that sizes from above one slot take that choice. Every element is checked
// against a plain reference, and the messages per op are reported: direct,
// the offer and two "done"s; through the ring, the offer and two per
// 256 KiB chunk of a segment.
import { allocHost, init } from '../../dist/index.js';

const comm = await init({ timeoutMs: 20_000 });
const r = comm.rank;
const ctors = { float32: Float32Array, float64: Float64Array, int32: Int32Array };
// Odd element counts: the two segments differ by one.
const cases = [
  ['float32', 'sum', 131_075], ['float64', 'max', 81_923], ['int32', 'sum', 200_007], ['float32', 'avg', 131_075],
  ['float32', 'sum', 700_001],
];
const result = { rank: r, hugePages: comm.tuning.hugePages, wrong: [], messagesPerOp: {} };
// Values exact in float32, and their sums and averages too.
const value = (rank, k, i, dtype) => {
  const v = ((rank * 7 + k * 3 + i) % 64) * (rank === 0 ? 1 : -0.5);
  return dtype === 'int32' ? Math.trunc(v * 2) : v;
};
const combine = (op, x, y) => (op === 'max' ? Math.max(x, y) : op === 'avg' ? (x + y) / 2 : x + y);
for (const layout of ['plain', 'allocHost']) {
  for (const [dtype, op, count] of cases) {
    for (const inPlace of [true, false]) {
      const make = () => (layout === 'allocHost' ? allocHost(dtype, count) : new ctors[dtype](count));
      const x = make(), y = inPlace ? x : make();
      comm.resetStats();
      const ops = 12;
      for (let k = 0; k < ops; k++) {
        for (let i = 0; i < count; i++) x[i] = value(r, k, i, dtype);
        await comm.allReduce(x, inPlace ? { op } : { op, out: y });
        for (let i = 0; i < count; i++) {
          const want = combine(op, value(0, k, i, dtype), value(1, k, i, dtype));
          if (y[i] !== want) {
            result.wrong.push(`${layout} ${dtype} ${op} ${count} ${inPlace ? 'in place' : 'out of place'} op ${k}: element ${i} is ${y[i]}, want ${want}`);
            break;
          }
        }
      }
      const st = comm.stats().allReduce;
      result.messagesPerOp[`${layout} ${dtype} ${op} ${count} ${inPlace ? 'in' : 'out'}`] = st.messagesSent / st.count;
    }
  }
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
