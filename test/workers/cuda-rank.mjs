// One rank of test/cuda.test.ts, run under `ringtree launch` against the CUDA/NCCL test doubles.
// CUDA_CASE picks the scenario; prints one JSON line.
// CASE_BACKEND=nccl makes the NCCL communicator in init() (an init failure prints { rank, initError }).
import { readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { init, DeviceArray } from '../../dist/index.js';

const err = (e) => ({ name: e?.name, message: String(e?.message).split('\n')[0], peer: e?.peer, remedy: e?.remedy });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// fake_cuda writes its live allocation count here (read back in 'disposePending').
const statsFile = path.join(os.tmpdir(), `ringtree-fake-cuda-${process.pid}.stats`);
if (process.env.CUDA_CASE === 'disposePending') process.env.FAKE_CUDA_STATS = statsFile;
const liveAllocations = () => { try { return Number(readFileSync(statsFile, 'utf8')); } catch { return -1; } };

let comm;
const t0 = Date.now();
try {
  comm = await init({ timeoutMs: Number(process.env.CASE_TIMEOUT_MS ?? 20000), backend: process.env.CASE_BACKEND || undefined });
} catch (e) {
  console.log(JSON.stringify({ rank: Number(process.env.RANK), initError: err(e), ms: Date.now() - t0 }));
  process.exit(0);
}
const out = { rank: comm.rank };
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
    case 'pipeline': {
      // Ops of one communicator are posted back to back (one stream keeps their
      // order); a copy on the device stream still waits for them to complete.
      const x = await DeviceArray.fromHost(new Float32Array([1, 2, 3]));
      const y = await DeviceArray.fromHost(new Float32Array([comm.rank, 1, 0]));
      const ps = [];
      for (let i = 0; i < 10; i++) ps.push(comm.allReduce(x));
      ps.push(comm.allReduce(y, { op: 'max' }));
      ps.push(comm.allReduce(x, { out: y }));
      const doubled = x.toHost();
      ps.push(x.copyFrom(new Float32Array([5, 5, 5])));
      ps.push(comm.allReduce(x, { op: 'max' }));
      ps.push(comm.allReduce(x.view(1, 2)));
      await Promise.all(ps);
      out.doubled = Array.from(await doubled);
      out.y = Array.from(await y.toHost());
      out.pipe = Array.from(await x.toHost());
      break;
    }
    case 'peerLoss': {
      // Rank 1 SIGKILLs itself while its 2nd collective is pending (FAKE_NCCL_HANG=1:2 keeps it there).
      const x = await DeviceArray.fromHost(new Float32Array([1]));
      await comm.allReduce(x);
      if (comm.rank === 1) {
        // With the doubles rank 1 dies inside its pending collective; with real NCCL (no hang injection) it never calls it.
        if (process.env.FAKE_NCCL_HANG) comm.allReduce(x).catch(() => undefined);
        await sleep(300);
        process.kill(process.pid, 'SIGKILL');
      }
      const t = Date.now();
      try { await comm.allReduce(x); } catch (e) { out.error = err(e); out.ms = Date.now() - t; }
      try { await comm.allReduce(x); } catch (e) { out.after = err(e); }
      break;
    }
    case 'abort': {
      // Both ranks wait in collective 2 (rank 1's never completes: FAKE_NCCL_HANG=1:2); rank 1 aborts.
      const x = await DeviceArray.fromHost(new Float32Array([1]));
      await comm.allReduce(x);
      const t = Date.now();
      // With real NCCL (no hang injection) rank 1 does not call it, so rank 0's stays pending.
      const p = comm.rank === 1 && !process.env.FAKE_NCCL_HANG ? null : comm.allReduce(x);
      if (comm.rank === 1) { await sleep(300); comm.abort('test abort'); }
      if (p) try { await p; out.resolved = true; } catch (e) { out.error = err(e); out.ms = Date.now() - t; }
      try { await comm.allReduce(new Float32Array([1])); } catch (e) { out.hostAfter = err(e); }
      break;
    }
    case 'split': {
      // Colors rank % 2: {0, 2} and {1} (a one-rank group); each runs its own NCCL allReduce.
      const sub = await comm.split(comm.rank % 2);
      const x = await DeviceArray.fromHost(new Float32Array([comm.rank + 1, 1]));
      await sub.allReduce(x);
      out.split = Array.from(await x.toHost());
      out.subSize = sub.size;
      const y = await DeviceArray.fromHost(new Int32Array([comm.rank + 1]));
      await comm.allReduce(y);
      out.world = Array.from(await y.toHost());
      await sub.allReduce(x, { op: 'max' });
      out.splitMax = Array.from(await x.toHost());
      await sub.destroy();
      break;
    }
    case 'splitNoColor': {
      // Rank 2 takes no color; ranks 0 and 1 (keys reversed) form a group of 2.
      const sub = await comm.split(comm.rank === 2 ? -1 : 0, -comm.rank);
      out.isNull = sub === null;
      const x = await DeviceArray.fromHost(new Float32Array([comm.rank + 1]));
      if (sub) {
        out.subRank = sub.rank;
        await sub.allReduce(x);
        out.split = Array.from(await x.toHost());
        await sub.destroy();
      }
      await comm.allReduce(x);
      out.world = Array.from(await x.toHost());
      break;
    }
    case 'disposePending': {
      const x = await DeviceArray.fromHost(new Float32Array(4096).fill(comm.rank + 1));
      const y = DeviceArray.alloc('float32', 4096);
      const v = x.view(1, 2);
      out.liveBefore = liveAllocations();
      const p = comm.allReduce(x, { out: y });
      const q = v.copyTo(new Float32Array(2));
      x.dispose();
      out.disposed = x.disposed;
      try { await comm.allReduce(x); } catch (e) { out.afterDispose = err(e); }
      try { await x.copyFrom(new Float32Array(4096)); } catch (e) { out.copyAfterDispose = err(e); }
      await p;
      await q;
      out.result = (await y.toHost())[4095];
      y.dispose();
      for (let i = 0; i < 100 && liveAllocations() !== 0; i++) await sleep(20);
      out.liveAfter = liveAllocations();
      break;
    }
    case 'p2p': {
      const peer = 1 - comm.rank;
      const a = await DeviceArray.fromHost(new Float32Array([1, 2, 3]).map((v) => v + 10 * comm.rank));
      const b = DeviceArray.alloc('float32', 3);
      if (comm.rank === 0) await comm.send(a, 1); else await comm.recv(b, 0);
      if (comm.rank === 1) out.recv = Array.from(await b.toHost());
      // a ring shift through sendRecv
      const s = await DeviceArray.fromHost(new Int32Array([comm.rank * 7 + 1]));
      const r = DeviceArray.alloc('int32', 1);
      await comm.sendRecv({ send: s, to: peer }, { recv: r, from: peer });
      out.shift = Array.from(await r.toHost());
      // receive listed first on both ranks: only a real NCCL group (sends and receives posted together) completes
      await comm.group([{ recv: r, from: peer }, { send: s, to: peer }], { timeoutMs: 5000 });
      out.recvFirst = Array.from(await r.toHost());
      // one NCCL group: to the peer and to self, views of one allocation
      const buf = await DeviceArray.fromHost(new Float64Array([comm.rank, comm.rank + 0.5, 0, 0]));
      await comm.group([{ send: buf.view(0, 1), to: peer }, { recv: buf.view(2, 1), from: peer },
        { send: buf.view(1, 1), to: comm.rank }, { recv: buf.view(3, 1), from: comm.rank }]);
      out.group = Array.from(await buf.toHost());
      // validation: mixed kinds, tags, dtype, overlap, bad rank (nothing moves, not poisoned)
      const tryErr = async (f) => { try { await f(); return null; } catch (e) { return err(e); } };
      out.mixed = await tryErr(() => comm.sendRecv({ send: a, to: peer }, { recv: new Float32Array(3), from: peer }));
      out.mixedHostFirst = await tryErr(() => comm.group([{ send: new Float32Array(3), to: peer }, { recv: b, from: peer }]));
      out.tag = await tryErr(() => comm.send(a, peer, { tag: 3 }));
      out.dtype = await tryErr(() => comm.send(a, peer, { dtype: 'float64' }));
      out.overlap = await tryErr(() => comm.group([{ recv: buf.view(0, 2), from: peer }, { send: buf.view(1, 2), to: peer }]));
      out.badRank = await tryErr(() => comm.recv(b, 5));
      // device and host ops still work after
      await comm.allReduce(a);
      out.sum = Array.from(await a.toHost());
      const h = new Float32Array([comm.rank + 1]);
      if (comm.rank === 0) await comm.send(h, 1); else await comm.recv(h, 0);
      out.host = h[0];
      break;
    }
    case 'failInit':
    case 'failAsync': {
      // FAKE_NCCL_FAIL=1:init (the first device op makes the communicator) or =1:async:2.
      const x = await DeviceArray.fromHost(new Float32Array([comm.rank + 1]));
      if (process.env.CUDA_CASE === 'failAsync') { await comm.allReduce(x); out.first = Array.from(await x.toHost()); }
      const t = Date.now();
      try { await comm.allReduce(x); out.resolved = true; } catch (e) { out.error = err(e); out.ms = Date.now() - t; }
      try { await comm.allReduce(x); } catch (e) { out.after = err(e); }
      break;
    }
  }
} catch (e) {
  out.fatal = err(e);
}
console.log(JSON.stringify(out));
await comm.destroy();
rmSync(statsFile, { force: true });
