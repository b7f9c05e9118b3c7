// 2 ranks: 32 reduce-scatters per case, which pairReduceScatter runs through
// the slots or direct (the kernel reads the peer's input) as each path's
// recent times say, exploring the other every 16th op: so both paths run in
// every case. Every element is checked against a plain reference; and where
// a segment spans two slot chunks the messages per op (2 direct: the offer
// and the "done"; 3 through the slots: the offer and two chunks) show that
// both paths ran.
import { init } from '../../dist/index.js';

const comm = await init({ timeoutMs: 20_000 });
const n = comm.size, r = comm.rank;
const ctors = { float32: Float32Array, float64: Float64Array, int32: Int32Array };
const cases = [
  ['float32', 'sum', 16_384], ['float32', 'sum', 65_537], ['float64', 'max', 40_961], ['int32', 'sum', 262_147],
  ['float32', 'avg', 65_537],
];
const result = { rank: r, wrong: [], messagesPerOp: {} };
// Values exact in float32 and their sums and averages too.
const value = (rank, k, i) => ((rank * 7 + k * 3 + i) % 64) * (rank === 0 ? 1 : -0.5);
const combine = (op, x, y) => (op === 'max' ? Math.max(x, y) : op === 'avg' ? (x + y) / 2 : x + y);
for (const [dtype, op, count] of cases) {
  for (const inPlace of [true, false]) {
    const C = ctors[dtype];
    const x = new C(count * n), y = inPlace ? x.subarray(r * count, (r + 1) * count) : new C(count);
    comm.resetStats();
    const ops = 32;
    for (let k = 0; k < ops; k++) {
      for (let i = 0; i < count * n; i++) x[i] = dtype === 'int32' ? Math.trunc(value(r, k, i) * 2) : value(r, k, i);
      await comm.reduceScatter(x, y, { op });
      for (let i = 0; i < count; i++) {
        const j = r * count + i;
        const a = dtype === 'int32' ? Math.trunc(value(0, k, j) * 2) : value(0, k, j);
        const b = dtype === 'int32' ? Math.trunc(value(1, k, j) * 2) : value(1, k, j);
        if (y[i] !== combine(op, a, b)) {
          result.wrong.push(`${dtype} ${op} ${count} ${inPlace ? 'in place' : 'out of place'} op ${k}: element ${i} is ${y[i]}, want ${combine(op, a, b)}`);
          break;
        }
      }
    }
    const st = comm.stats().reduceScatter;
    result.messagesPerOp[`${dtype} ${op} ${count} ${inPlace ? 'in' : 'out'}`] = st.messagesSent / st.count;
  }
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
