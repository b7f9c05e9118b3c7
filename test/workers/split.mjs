// Rank for test/split.test.ts: prints one JSON line of what it saw.
import { init, InvalidArgumentError } from '../../dist/index.js';

const comm = await init();
const out = { rank: comm.rank };
try {
  // Reverse order inside each group: key = -rank.
  const sub = await comm.split(comm.rank % 2, -comm.rank);
  out.sub = { rank: sub.rank, size: sub.size, parents: sub.parentRanks() };
  // The two groups run different collectives at the same time.
  const x = new Float64Array(300001).map((_, i) => comm.rank * 1000 + (i % 13));
  if (comm.rank % 2 === 0) await sub.allReduce(x, { chunkBytes: 4096 });
  else await sub.broadcast(x, { root: 0 });
  out.x = [x[0], x[12], x[300000]];
  // Nested split of the group, and color -1.
  const solo = await sub.split(sub.rank === 0 ? 5 : -1);
  out.solo = solo ? { rank: solo.rank, size: solo.size, parents: solo.parentRanks() } : null;
  if (solo) {
    const y = new Int32Array([7]);
    await solo.allReduce(y);
    out.soloSum = y[0];
    await solo.destroy();
  }
  // Parent still works after the children were made.
  const z = new Int32Array([1]);
  await comm.allReduce(z);
  out.parentSum = z[0];
  try {
    await comm.split(-2);
  } catch (e) {
    out.badColor = e instanceof InvalidArgumentError ? e.message : `wrong class ${e.name}`;
  }
  const z2 = new Int32Array([1]);
  await comm.allReduce(z2);
  out.afterBad = z2[0];
  await sub.destroy();
} catch (e) {
  out.error = `${e.name}: ${e.message}`;
}
console.log(JSON.stringify(out));
await comm.destroy();
