// Rank for test/split.test.ts: the traffic of a ring allreduce and of p2p, from stats().
import { init } from '../../dist/index.js';

const comm = await init();
comm.resetStats();
const n = comm.size;
await comm.allReduce(new Float32Array(3 * 1000), { algorithm: 'ring', chunkBytes: 1000 });
const afterRing = comm.stats().allReduce;
comm.resetStats();
// Bytes count when they arrive, which may be before the matching recv is
// posted: make sure no rank sends before every rank has reset its counters.
await comm.barrier();
await comm.sendRecv({ send: new Uint8Array(5000), to: (comm.rank + 1) % n }, { recv: new Uint8Array(5000), from: (comm.rank + n - 1) % n });
const p2p = comm.stats();
console.log(JSON.stringify({ rank: comm.rank, ring: afterRing, send: p2p.send, recv: p2p.recv, allReduceAfterReset: p2p.allReduce.count }));
await comm.destroy();
