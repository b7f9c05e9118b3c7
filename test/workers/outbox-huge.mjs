// 4 ranks: broadcasts and all-gathers of 1 MiB blocks where every rank, some
// ranks or no rank has its arrays on huge pages (allocHost): a writer on huge
// pages publishes its address, the others go through their outboxes, and each
// reader follows each writer. Prints whether every result was right.
import { allocHost, init } from '../../dist/index.js';

const comm = await init({ timeoutMs: 20_000 });
const n = comm.size, r = comm.rank, count = 262_144;
const layouts = { all: () => true, even: (k) => k % 2 === 0, none: () => false };
const result = { rank: r, hugePages: comm.tuning.hugePages, wrong: [] };
for (const [name, onHuge] of Object.entries(layouts)) {
  const make = (len) => (onHuge(r) ? allocHost('float32', len) : new Float32Array(len));
  const y = make(count * n), b = make(count);
  for (let k = 0; k < 6; k++) {
    for (let i = 0; i < count; i++) y[r * count + i] = r * 1e6 + k * 1000 + (i % 1000);
    await comm.allGather(y.subarray(r * count, (r + 1) * count), y);
    for (let p = 0; p < n; p++) for (let i = 0; i < count; i += 331) {
      if (y[p * count + i] !== p * 1e6 + k * 1000 + (i % 1000)) { result.wrong.push(`${name} allGather op ${k} block ${p}`); break; }
    }
    const root = k % n;
    if (r === root) for (let i = 0; i < count; i++) b[i] = root * 1e6 + k * 1000 + (i % 999);
    else b.fill(-1);
    await comm.broadcast(b, { root });
    for (let i = 0; i < count; i += 331) {
      if (b[i] !== root * 1e6 + k * 1000 + (i % 999)) { result.wrong.push(`${name} broadcast op ${k} root ${root}`); break; }
    }
  }
}
console.log(`RESULT ${JSON.stringify(result)}`);
await comm.destroy();
