// 2 ranks: 32 reduce-scatters or allreduces (OP) per case, which
// pairReduceScatter / pairAllReduce run through the slots or direct (the
// kernel reads the peer's buffers) as each path's recent times say,
// exploring the other every 16th op: so both paths run in every case.
// Every element is checked against a plain reference, and the messages per
// op are reported: direct, the offer and one (reduce-scatter) or two
// (allreduce) "done"s; through the slots, the offer and one (reduce-scatter)
// or two (allreduce) per 256 KiB chunk of a segment.
import { init } from '../../dist/index.js';

const comm = await init({ timeoutMs: 20_000 });
const n = comm.size, r = comm.rank;
const kind = process.env.OP ?? 'reduceScatter';
const ctors = { float32: Float32Array, float64: Float64Array, int32: Int32Array };
const cases = [
  ['float32', 'sum', 16_384], ['float32', 'sum', 65_537], ['float64', 'max', 40_961], ['int32', 'sum', 262_147],
  ['float32', 'avg', 65_537],
];
const result = { rank: r, wrong: [], messagesPerOp: {} };
// Values exact in float32, and their sums and averages too.
const value = (rank, k, i, dtype) => {
  const v = ((rank * 7 + k * 3 + i) % 64) * (rank === 0 ? 1 : -0.5);
  return dtype === 'int32' ? Math.trunc(v * 2) : v;
};
const combine = (op, x, y) => (op === 'max' ? Math.max(x, y) : op === 'avg' ? (x + y) / 2 : x + y);
for (const [dtype, op, perRank] of cases) {
  // reduceScatter: `perRank` elements out of each rank; allreduce: that many
  // in all (an odd count splits unevenly).
  const total = kind === 'reduceScatter' ? perRank * n : perRank * n + 1;
  for (const inPlace of [true, false]) {
    const C = ctors[dtype];
    const x = new C(total);
    const [lo, hi] = kind === 'reduceScatter' ? [r * perRank, (r + 1) * perRank] : [0, total];
    const y = inPlace ? x.subarray(lo, hi) : new C(hi - lo);
    comm.resetStats();
    const ops = 32;
    for (let k = 0; k < ops; k++) {
      for (let i = 0; i < total; i++) x[i] = value(r, k, i, dtype);
      if (kind === 'reduceScatter') await comm.reduceScatter(x, y, { op });
      else await comm.allReduce(x, inPlace ? { op } : { op, out: y });
      for (let i = 0; i < hi - lo; i++) {
        const want = combine(op, value(0, k, lo + i, dtype), value(1, k, lo + i, dtype));
        if (y[i] !== want) {
          result.wrong.push(`${kind} ${dtype} ${op} ${total} ${inPlace ? 'in place' : 'out of place'} op ${k}: element ${lo + i} is ${y[i]}, want ${want}`);
          break;
        }
      }
    }
    const st = comm.stats()[kind];
    result.messagesPerOp[`${dtype} ${op} ${total} ${inPlace ? 'in' : 'out'}`] = st.messagesSent / st.count;
  }
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
