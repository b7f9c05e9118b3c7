// Rank for test/init.test.ts: init() from whatever environment the test set,
// one allreduce, and a JSON line with what it saw (or the error it got).
import { init } from '../../dist/index.js';

try {
  const comm = await init({ initTimeoutMs: Number(process.env.TEST_INIT_TIMEOUT_MS ?? 20000) });
  const x = new Int32Array([comm.rank + 1]);
  await comm.allReduce(x);
  // TEST_BROADCAST_ELEMS: also broadcast that many float32 from rank 0 and check them.
  let broadcastOk;
  const elems = Number(process.env.TEST_BROADCAST_ELEMS ?? 0);
  if (elems > 0) {
    const b = new Float32Array(elems).map((_, i) => (comm.rank === 0 ? i % 1000 : -1));
    await comm.broadcast(b, { root: 0 });
    broadcastOk = b.every((v, i) => v === i % 1000);
  }
  console.log(JSON.stringify({ ok: true, rank: comm.rank, size: comm.size, sum: x[0], broadcastOk, outboxBytes: comm.tuning.outboxBytes }));
  await comm.destroy();
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: e.name, code: e.code, message: e.message, op: e.op }));
}
