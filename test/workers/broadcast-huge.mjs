// 2 ranks: broadcasts from either root where both ranks, only the root, only
// the reader or neither has its array on huge pages (allocHost), in place
// and out of place, at sizes around the split (odd byte counts, 64 KiB to
// past 4 MiB, where the engine collapses plain arrays too). Where the root is
// on huge pages and in place and the reader's output on huge pages too, the
// root writes the second half of the reader's output itself and tells it so:
// one more message from the root per op. Prints every wrong element range
// and the root's messages per op, per case.
import { allocHost, init } from '../../dist/index.js';

const comm = await init({ timeoutMs: 20_000 });
const r = comm.rank;
const ctors = { float32: Float32Array, float64: Float64Array, uint8: Uint8Array, int32: Int32Array };
const layouts = { both: [true, true], root: [true, false], reader: [false, true], neither: [false, false] };
const cases = [
  ['float32', 16_384], ['uint8', 65_537], ['float64', 131_071], ['int32', 262_147], ['float32', 1_048_583],
];
const result = { rank: r, hugePages: comm.tuning.hugePages, wrong: [], rootMessagesPerOp: {} };
const value = (root, k, i, dtype) => (dtype === 'uint8' ? (root * 37 + k * 11 + i) % 251 : root * 1e6 + k * 1000 + (i % 997));
for (const [name, [rootHuge, readerHuge]] of Object.entries(layouts)) {
  for (const [dtype, count] of cases) {
    for (const inPlace of [true, false]) {
      for (const root of [0, 1]) {
        const huge = r === root ? rootHuge : readerHuge;
        const make = () => (huge ? allocHost(dtype, count) : new ctors[dtype](count));
        const b = make(), out = inPlace ? b : make();
        comm.resetStats();
        const ops = 3;
        for (let k = 0; k < ops; k++) {
          if (r === root) for (let i = 0; i < count; i++) b[i] = value(root, k, i, dtype);
          else b.fill(0);
          if (!inPlace) out.fill(0);
          await comm.broadcast(b, inPlace ? { root } : { root, out });
          const got = r === root && inPlace ? b : out;
          for (let i = 0; i < count; i++) {
            if (got[i] !== value(root, k, i, dtype)) {
              result.wrong.push(`${name} ${dtype} ${count} ${inPlace ? 'in place' : 'out of place'} root ${root} op ${k}: element ${i} is ${got[i]}`);
              break;
            }
          }
        }
        if (r === root) {
          const st = comm.stats().broadcast;
          result.rootMessagesPerOp[`${name} ${dtype} ${count} ${inPlace ? 'in' : 'out'}`] = st.messagesSent / st.count;
        }
      }
    }
  }
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
