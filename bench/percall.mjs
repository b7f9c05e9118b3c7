#!/usr/bin/env node
// benny micro-benchmarks of the per-call cost of a 2-float allreduce: the
// synchronous form, one awaited Promise at a time, and 256 Promises in
// flight, at world size 1 (no byte moves: the cost of the call itself) and,
// under the launcher, at world size 2 (shared memory, one hop each way).
//   node bench/percall.mjs                                  # world size 1
//   node dist/cli.js launch --nproc 2 bench/percall.mjs     # world size 2
//   ... --json FILE                                          # benny's results
// At world size 2, rank 0 runs the suite and rank 1 answers every call with
// synchronous allreduces until rank 0 flags the last one (element 1 = 1), so
// both ranks issue the same sequence however many samples benny takes.
import { parseArgs } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import b from 'benny';
import { init } from '../dist/index.js';

const { values } = parseArgs({ options: { json: { type: 'string' }, time: { type: 'string', default: '3' } } });
const comm = await init();
const n = comm.size;
const inFlight = 256;

if (comm.rank !== 0) {
  const x = new Float32Array(2);
  for (;;) {
    x[1] = 0;
    comm.allReduceSync(x);
    if (x[1] >= 1) break;
  }
  await comm.destroy();
  process.exit(0);
}

const a = new Float32Array(2), out = new Float32Array(2);
const options = { out };
const caseOptions = { maxTime: Number(values.time), minSamples: 10 };
const perOp = { sync: 1, awaited: 1, [`${inFlight} in flight`]: inFlight };
const rows = [];
await b.suite(
  `ringtree per-call cost, world size ${n}, allreduce of 2 float32`,
  b.add('sync', () => { comm.allReduceSync(a, options); }, caseOptions),
  b.add('awaited', async () => { await comm.allReduce(a, options); }, caseOptions),
  b.add(`${inFlight} in flight`, async () => {
    const pending = new Array(inFlight);
    for (let i = 0; i < inFlight; i++) pending[i] = comm.allReduce(a, options);
    await Promise.all(pending);
  }, caseOptions),
  b.cycle(),
  b.complete((summary) => {
    for (const r of summary.results) {
      const us = 1e6 / r.ops / perOp[r.name];
      rows.push({ name: r.name, usPerOp: us, margin: r.margin, samples: r.samples });
      console.log(`# ${r.name.padEnd(16)} ${us.toFixed(2).padStart(8)} us per op  (+-${r.margin}%, ${r.samples} samples)`);
    }
    console.log(`# load average ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
  }),
);
if (n > 1) comm.allReduceSync(new Float32Array([0, 1]));
if (values.json) writeFileSync(values.json, JSON.stringify({ worldSize: n, rows }, null, 2));
await comm.destroy();
