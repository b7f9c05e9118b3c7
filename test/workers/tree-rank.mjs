// One rank of test/tree.test.ts: runs the tree-algorithm case table (every
// tree collective x a representative dtype/op set x awkward sizes x roots x
// placement), checks each result against the plain JS reference of
// collectiveTable.mjs, records result hashes (bit identity across ranks is
// checked by the test), the per-peer traffic of a tree and a ring allreduce
// from comm.stats(), and the unsupported-pair errors; writes
// $RINGTREE_TEST_OUT/rank<r>.json.
//
// Env: RINGTREE_TEST_OUT (directory), RINGTREE_TREE_TABLE ('full' | 'small').
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { init, InvalidArgumentError } from '../../dist/index.js';
import { dtypeOption, firstDifference, makeInput, reduced, sentinel, sha256, snapshot, bytesOf } from './collectiveTable.mjs';
import { treeCases } from './tree-cases.mjs';

const outDir = process.env.RINGTREE_TEST_OUT;
if (!outDir) throw new Error('RINGTREE_TEST_OUT is not set');
const comm = await init();
const { rank, size } = comm;
const results = {};

async function runCase(c) {
  const errors = [];
  const common = { ...dtypeOption(c.dtype), algorithm: c.algorithm, timeoutMs: 60_000, ...(c.chunkBytes ? { chunkBytes: c.chunkBytes } : {}) };
  const check = (what, got, want) => { const d = firstDifference(got, want, c.dtype); if (d) errors.push(`${what}: ${d}`); };
  const unchanged = (what, a, before) => { if (Buffer.compare(bytesOf(a), before) !== 0) errors.push(`${what} was modified`); };
  let hash;
  if (c.coll === 'allReduce') {
    const x = makeInput(c, rank, c.count), before = snapshot(x), want = reduced(c, size, c.count);
    if (c.inPlace) { await comm.allReduce(x, { ...common, op: c.op }); check('x (in place)', x, want); hash = sha256(x); }
    else {
      const out = sentinel(c.dtype, c.count);
      await comm.allReduce(x, { ...common, op: c.op, out });
      check('out', out, want); unchanged('x', x, before); hash = sha256(out);
    }
  } else if (c.coll === 'broadcast') {
    const want = makeInput(c, c.root, c.count);
    const x = rank === c.root ? makeInput(c, rank, c.count) : sentinel(c.dtype, c.count);
    const before = snapshot(x);
    if (c.inPlace) { await comm.broadcast(x, { ...common, root: c.root }); check('x (in place)', x, want); hash = sha256(x); }
    else {
      const out = sentinel(c.dtype, c.count);
      await comm.broadcast(x, { ...common, root: c.root, out });
      check('out', out, want); unchanged('x', x, before); hash = sha256(out);
    }
  } else {
    const x = makeInput(c, rank, c.count), before = snapshot(x);
    const isRoot = rank === c.root;
    if (c.inPlace) {
      await comm.reduce(x, { ...common, op: c.op, root: c.root });
      if (isRoot) check('x (in place, root)', x, reduced(c, size, c.count));
    } else {
      const out = isRoot ? sentinel(c.dtype, c.count) : undefined;
      await comm.reduce(x, { ...common, op: c.op, root: c.root, out });
      if (isRoot) check('out (root)', out, reduced(c, size, c.count));
      unchanged('x', x, before);
    }
  }
  return { errors, hash };
}

for (const c of treeCases(size, process.env.RINGTREE_TREE_TABLE ?? 'full')) {
  try { results[c.id] = await runCase(c); } catch (e) { results[c.id] = { errors: [`threw ${e?.name}: ${e?.message}`] }; }
}

// Which peers a tree and a ring allreduce talk to (comm.stats() per peer).
const traffic = {};
for (const algorithm of ['tree', 'ring']) {
  comm.resetStats();
  await comm.allReduce(new Float32Array(1000).fill(1), { algorithm });
  const st = comm.stats().allReduce;
  traffic[algorithm] = { bytesSent: st.bytesSent, bytesReceived: st.bytesReceived, algorithms: st.algorithms };
}

// Unsupported (collective, algorithm) pairs reject before anything moves.
const invalid = {};
for (const [name, call] of [
  ['allGather', () => comm.allGather(new Float32Array(4), new Float32Array(4 * size), { algorithm: 'tree' })],
  ['reduceScatter', () => comm.reduceScatter(new Float32Array(4 * size), new Float32Array(4), { algorithm: 'tree' })],
  ['barrier', () => comm.barrier({ algorithm: 'tree' })],
  ['allReduce', () => comm.allReduce(new Float32Array(4), { algorithm: 'bogus' })],
]) {
  try { await call(); invalid[name] = { resolved: true }; }
  catch (e) { invalid[name] = { isInvalidArgument: e instanceof InvalidArgumentError, message: e.message }; }
}

// Every rank finishes its last op before any rank leaves.
await comm.barrier();
writeFileSync(path.join(outDir, `rank${rank}.json`), JSON.stringify({ rank, size, results, traffic, invalid }));
await comm.destroy();
