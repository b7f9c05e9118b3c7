// Run with: npx ringtree launch --nproc 2 examples/allreduce.mjs
// Every rank contributes its rank number; every rank ends with the sum.
import { init } from 'ringtree';

const comm = await init();
const x = new Float32Array(1 << 20).fill(comm.rank);
await comm.allReduce(x, { op: 'sum' });
const expected = (comm.size * (comm.size - 1)) / 2;
console.log(`rank ${comm.rank}/${comm.size}: x[0] = ${x[0]} (expected ${expected})`);

const y = new Float32Array(4);
await comm.reduceScatter(new Float32Array(4 * comm.size).fill(1), y);
console.log(`rank ${comm.rank}: reduceScatter -> [${y.join(', ')}]`);
await comm.destroy();
