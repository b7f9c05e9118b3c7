// One rank of test/cuda.test.ts, run under `ringtree launch` against the CUDA/NCCL test doubles.
// CUDA_CASE picks the scenario; prints one JSON line.
import { init, DeviceArray } from '../../dist/index.js';

const comm = await init({ timeoutMs: Number(process.env.CASE_TIMEOUT_MS ?? 20000) });
const out = { rank: comm.rank };
const err = (e) => ({ name: e?.name, message: String(e?.message).split('\n')[0], peer: e?.peer });
try {
  switch (process.env.CUDA_CASE) {
    case 'collectives': {
      const x = await DeviceArray.fromHost(new Float32Array([comm.rank + 1, 10, 100]));
      await comm.allReduce(x);
      out.sum = Array.from(await x.toHost());
      const y = DeviceArray.alloc('float32', 3);
      await comm.allReduce(x, { out: y, op: 'max' });
      out.max = Array.from(await y.toHost());
      const b = await DeviceArray.fromHost(new Int32Array([comm.rank * 7, 1]));
      await comm.broadcast(b, { root: 1 });
      out.bcast = Array.from(await b.toHost());
      const g = DeviceArray.alloc('int32', 2 * comm.size);
      await comm.allGather(b.view(0, 2), g);
      out.gather = Array.from(await g.toHost());
      const a = await DeviceArray.fromHost(new Int32Array([7, 3, 5, 9]));
      const r = DeviceArray.alloc('int32', 2);
      await comm.reduceScatter(a, r, { op: 'avg' });
      out.rsAvg = Array.from(await r.toHost());
      // host arrays still go to the CPU engine, and barrier follows device work
      const h = new Float64Array([comm.rank]);
      await comm.allReduce(h);
      out.host = h[0];
      await comm.barrier();
      try { await comm.allReduce(x, { out: new Float32Array(3) }); } catch (e) { out.mixed = err(e); }
      x.dispose();
      break;
    }
    case 'hang': {
      const x = await DeviceArray.fromHost(new Float32Array([1]));
      await comm.allReduce(x);
      try { await comm.allReduce(x, { timeoutMs: 1500 }); } catch (e) { out.error = err(e); }
      try { await comm.allReduce(x); } catch (e) { out.after = err(e); }
      break;
    }
    case 'mismatch': {
      try {
        if (comm.rank === 1) await comm.allReduce(new Float32Array([1]));
        else await comm.allReduce(await DeviceArray.fromHost(new Float32Array([1])));
      } catch (e) { out.error = err(e); }
      break;
    }
  }
} catch (e) {
  out.fatal = err(e);
}
console.log(JSON.stringify(out));
await comm.destroy();
