// Rank for test/init.test.ts: init() from whatever environment the test set,
// one allreduce, and a JSON line with what it saw (or the error it got).
import { init } from '../../dist/index.js';

try {
  const comm = await init({ initTimeoutMs: Number(process.env.TEST_INIT_TIMEOUT_MS ?? 20000) });
  const x = new Int32Array([comm.rank + 1]);
  await comm.allReduce(x);
  console.log(JSON.stringify({ ok: true, rank: comm.rank, size: comm.size, sum: x[0] }));
  await comm.destroy();
} catch (e) {
  console.log(JSON.stringify({ ok: false, name: e.name, code: e.code, message: e.message, op: e.op }));
}
