// One rank of test/collectives.test.ts: runs a whole case table (and the
// p2p/sync/barrier/argument sections) in one process start, checks every
// result against the reference in collectiveTable.mjs, and writes
// $RINGTREE_TEST_OUT/rank<r>.json for the test to assert on.
//
// Env: RINGTREE_TEST_OUT (directory), RINGTREE_TEST_TABLE ('full' | 'simd' | 'slots'),
// RINGTREE_TEST_HOSTS (pose as that many hosts).
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { init, InvalidArgumentError } from '../../dist/index.js';
import { loadBinding } from '../../dist/binding.js';
import {
  DTYPES, OPS, OP_TIMEOUT_MS, buildTable, dtypeOption, firstDifference, makeInput, reduced, sectionsOf, sentinel, sha256, snapshot,
  bytesOf,
} from './collectiveTable.mjs';

const outDir = process.env.RINGTREE_TEST_OUT;
const tableName = process.env.RINGTREE_TEST_TABLE ?? 'full';
if (!outDir) throw new Error('RINGTREE_TEST_OUT is not set');

// RINGTREE_TEST_HOSTS=k: pose as k hosts (consecutive ranks share one), so
// that ranks on "different hosts" talk TCP and the others shared memory.
if (process.env.RINGTREE_TEST_HOSTS) {
  const hosts = Number(process.env.RINGTREE_TEST_HOSTS);
  const perHost = Math.ceil(Number(process.env.WORLD_SIZE) / hosts);
  process.env.RINGTREE_HOST_ID = `test-host-${Math.floor(Number(process.env.RANK) / perHost)}`;
}
const comm = await init();
const { rank, size } = comm;
const results = {};
const started = Date.now();

function unchanged(a, before) {
  return Buffer.compare(bytesOf(a), before) === 0;
}

/** A copy of `a` placed `offset` elements into a larger buffer (a view whose byteOffset is not 0). */
function shifted(a, offset) {
  const big = new a.constructor(a.length + offset + 3);
  big.set(a, offset);
  return big.subarray(offset, offset + a.length);
}

/** Runs one table case; returns { hash?, errors: string[] }. */
async function runCase(c) {
  const errors = [];
  const place = (a) => (c.offset ? shifted(a, c.offset) : a);
  const common = {
    ...dtypeOption(c.dtype), timeoutMs: OP_TIMEOUT_MS,
    ...(c.chunkBytes ? { chunkBytes: c.chunkBytes } : {}), ...(c.algorithm ? { algorithm: c.algorithm } : {}),
  };
  const expectEqual = (what, got, want) => {
    const d = firstDifference(got, want, c.dtype);
    if (d) errors.push(`${what}: ${d}`);
  };
  const expectUnchanged = (what, a, before) => {
    if (!unchanged(a, before)) errors.push(`${what} was modified`);
  };
  let hash;
  switch (c.coll) {
    case 'allReduce': {
      const x = place(makeInput(c, rank, c.count));
      const before = snapshot(x);
      const want = reduced(c, size, c.count);
      if (c.inPlace) {
        await comm.allReduce(x, { ...common, op: c.op });
        expectEqual('x (in place)', x, want);
        hash = sha256(x);
      } else {
        const out = place(sentinel(c.dtype, c.count));
        await comm.allReduce(x, { ...common, op: c.op, out });
        expectEqual('out', out, want);
        expectUnchanged('x', x, before);
        hash = sha256(out);
      }
      break;
    }
    case 'reduceScatter': {
      const x = place(makeInput(c, rank, size * c.count));
      const before = snapshot(x);
      const want = reduced(c, size, size * c.count).subarray(rank * c.count, (rank + 1) * c.count);
      const y = c.inPlace ? x.subarray(rank * c.count, (rank + 1) * c.count) : place(sentinel(c.dtype, c.count));
      await comm.reduceScatter(x, y, { ...common, op: c.op });
      expectEqual(c.inPlace ? 'y = x.subarray(rank block) (in place)' : 'y', y, want);
      if (!c.inPlace) expectUnchanged('x', x, before);
      hash = sha256(y);
      break;
    }
    case 'allGather': {
      const mine = place(makeInput(c, rank, c.count));
      const before = snapshot(mine);
      const want = sentinel(c.dtype, size * c.count);
      for (let q = 0; q < size; q++) want.set(makeInput(c, q, c.count), q * c.count);
      const y = place(sentinel(c.dtype, size * c.count));
      let x = mine;
      if (c.inPlace) {
        y.set(mine, rank * c.count);
        x = y.subarray(rank * c.count, (rank + 1) * c.count);
      }
      await comm.allGather(x, y, common);
      expectEqual('y', y, want);
      if (!c.inPlace) expectUnchanged('x', x, before);
      hash = sha256(y);
      break;
    }
    case 'broadcast': {
      const x = place(makeInput(c, rank, c.count));
      const before = snapshot(x);
      const want = makeInput(c, c.root, c.count);
      if (c.inPlace) {
        await comm.broadcast(x, { ...common, root: c.root });
        expectEqual('x (in place)', x, want);
        hash = sha256(x);
      } else {
        const out = place(sentinel(c.dtype, c.count));
        await comm.broadcast(x, { ...common, root: c.root, out });
        expectEqual('out', out, want);
        expectUnchanged('x', x, before);
        hash = sha256(out);
      }
      break;
    }
    case 'reduce': {
      const x = place(makeInput(c, rank, c.count));
      const before = snapshot(x);
      const isRoot = rank === c.root;
      const want = isRoot ? reduced(c, size, c.count) : null;
      if (c.inPlace) {
        await comm.reduce(x, { ...common, op: c.op, root: c.root });
        if (isRoot) { expectEqual('x on the root (in place)', x, want); hash = sha256(x); }
        else expectUnchanged('x on a non-root', x, before);
      } else {
        const out = place(sentinel(c.dtype, c.count));
        const outBefore = snapshot(out);
        await comm.reduce(x, { ...common, op: c.op, root: c.root, out });
        expectUnchanged(isRoot ? 'x on the root' : 'x on a non-root', x, before);
        if (isRoot) { expectEqual('out on the root', out, want); hash = sha256(out); }
        else expectUnchanged('out on a non-root', out, outBefore);
      }
      break;
    }
    default: throw new Error(c.coll);
  }
  return { hash, errors };
}

/** Runs a named check: fn returns a list of problems (or throws). */
async function check(name, fn) {
  try {
    const problems = (await fn()) ?? [];
    results[name] = { errors: problems };
  } catch (e) {
    results[name] = { errors: [`threw ${e?.name}: ${e?.message}`] };
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const f32 = (seed, who, count) => makeInput({ dtype: 'float32', op: null, seed }, who, count);
const same = (a, b, what) => (Buffer.compare(bytesOf(a), bytesOf(b)) === 0 ? [] : [`${what}: ${firstDifference(a, b, 'float32') ?? 'differs'}`]);
const T = { timeoutMs: OP_TIMEOUT_MS };

for (const c of buildTable(size, tableName)) {
  try {
    results[c.id] = await runCase(c);
  } catch (e) {
    results[c.id] = { errors: [`threw ${e?.name}: ${e?.message}`] };
  }
}

const sections = sectionsOf(tableName);
const right = (rank + 1) % size, left = (rank + size - 1) % size;

if (sections.includes('p2p')) {
  await comm.barrier(T);
  await check('p2p/ring shift larger than a slot', async () => {
    const count = 300_000;
    const x = f32(1, rank, count), before = snapshot(x);
    const y = new Float32Array(count);
    await comm.sendRecv({ send: x, to: right }, { recv: y, from: left }, T);
    return [...same(y, f32(1, left, count), 'received'), ...(unchanged(x, before) ? [] : ['send buffer modified'])];
  });
  await check('p2p/pairs exchange both ways in one group', async () => {
    // Partners 0<->1, 2<->3; an odd rank out exchanges with itself.
    const partner = (rank ^ 1) < size ? rank ^ 1 : rank;
    const a = makeInput({ dtype: 'float64', op: null, seed: 2 }, rank, 200_000);
    const b = new Float64Array(200_000);
    const h = makeInput({ dtype: 'bfloat16', op: null, seed: 3 }, rank, 70_001);
    const g = new Uint16Array(70_001);
    await comm.group([
      { send: a, to: partner, tag: 7 }, { recv: b, from: partner, tag: 7 },
      { send: h, to: partner, tag: 8, dtype: 'bfloat16' }, { recv: g, from: partner, tag: 8, dtype: 'bfloat16' },
    ], T);
    const problems = [];
    if (firstDifference(b, makeInput({ dtype: 'float64', op: null, seed: 2 }, partner, 200_000), 'float64')) problems.push('float64 message wrong');
    if (firstDifference(g, makeInput({ dtype: 'bfloat16', op: null, seed: 3 }, partner, 70_001), 'bfloat16')) problems.push('bfloat16 message wrong');
    return problems;
  });
  for (const [label, count] of [['small', 16], ['larger than a slot', 100_000]]) {
    await check(`p2p/tags out of order, ${label}, sends awaited one by one`, async () => {
      if (size < 2 || rank > 1) return [];
      if (rank === 0) {
        await comm.send(f32(10, 0, count), 1, { ...T, tag: 1 });
        await comm.send(f32(11, 0, count), 1, { ...T, tag: 2 });
        return [];
      }
      const second = new Float32Array(count), first = new Float32Array(count);
      await comm.recv(second, 0, { ...T, tag: 2 });
      await comm.recv(first, 0, { ...T, tag: 1 });
      return [...same(second, f32(11, 0, count), 'tag 2'), ...same(first, f32(10, 0, count), 'tag 1')];
    });
  }
  await check('p2p/same tag keeps send order', async () => {
    if (size < 2 || rank > 1) return [];
    const msgs = [0, 1, 2].map((k) => f32(20 + k, 0, 1000 + k * 50_000));
    if (rank === 0) {
      await Promise.all(msgs.map((m) => comm.send(m, 1, { ...T, tag: 4 })));
      return [];
    }
    const problems = [];
    for (let k = 0; k < 3; k++) {
      const into = new Float32Array(msgs[k].length);
      await comm.recv(into, 0, { ...T, tag: 4 });
      problems.push(...same(into, msgs[k], `message ${k}`));
    }
    return problems;
  });
  await check('p2p/zero-length messages', async () => {
    await comm.sendRecv({ send: new Float32Array(0), to: right }, { recv: new Float32Array(0), from: left }, T);
    await comm.group([{ send: new BigInt64Array(0), to: right, tag: 5 }, { recv: new BigInt64Array(0), from: left, tag: 5 }], T);
    return [];
  });
  await check('p2p/self send and receive', async () => {
    const x = f32(30, rank, 50_000), y = new Float32Array(50_000);
    await comm.sendRecv({ send: x, to: rank, tag: 3 }, { recv: y, from: rank, tag: 3 }, T);
    const z = new Float32Array(50_000);
    await comm.send(x, rank, { ...T, tag: 6 });
    await comm.recv(z, rank, { ...T, tag: 6 });
    return [...same(y, x, 'sendRecv to self'), ...same(z, x, 'send then recv to self')];
  });
  await check('p2p/a pending receive does not block collectives', async () => {
    if (size < 2) return [];
    const msg = new Float32Array(100);
    let pending = Promise.resolve();
    if (rank === 1) pending = comm.recv(msg, 0, { ...T, tag: 9 });
    const x = new Float32Array([rank + 1]);
    await comm.allReduce(x, T);
    if (rank === 0) await comm.send(f32(40, 0, 100), 1, { ...T, tag: 9 });
    await pending;
    const problems = x[0] === (size * (size + 1)) / 2 ? [] : [`allReduce gave ${x[0]}`];
    if (rank === 1) problems.push(...same(msg, f32(40, 0, 100), 'message'));
    return problems;
  });
}

if (sections.includes('sync')) {
  await comm.barrier(T);
  await check('sync/async ops queued before a sync op finish first', async () => {
    const problems = [];
    const a = new Int32Array(1000).fill(rank + 1);
    const b = new Float64Array(777).fill(rank === size - 1 ? 42.5 : -1);
    const c = new Float32Array(3000).fill(1);
    const p1 = comm.allReduce(a, T);
    const p2 = comm.broadcast(b, { ...T, root: size - 1 });
    comm.allReduceSync(c, T);
    // Checked synchronously: no callback has run yet, the bytes must already be final.
    if (!a.every((v) => v === (size * (size + 1)) / 2)) problems.push(`queued allReduce not finished: a[0]=${a[0]}`);
    if (!b.every((v) => v === 42.5)) problems.push(`queued broadcast not finished: b[0]=${b[0]}`);
    if (!c.every((v) => v === size)) problems.push(`allReduceSync gave ${c[0]}`);
    await Promise.all([p1, p2]);
    return problems;
  });
  await check('sync/broadcastSync and barrierSync between async ops', async () => {
    const problems = [];
    const root = size > 1 ? 1 : 0;
    const d = new Uint8Array(5000).fill(rank === root ? 7 : 0);
    const e = new BigInt64Array(300).fill(BigInt(rank) * 10n ** 15n);
    const p = comm.allReduce(e, { ...T, op: 'max' });
    comm.broadcastSync(d, { ...T, root });
    comm.barrierSync(T);
    if (e[0] !== BigInt(size - 1) * 10n ** 15n) problems.push(`queued allReduce(max) not finished: ${e[0]}`);
    if (!d.every((v) => v === 7)) problems.push(`broadcastSync gave ${d[0]}`);
    const after = new Float32Array([rank]);
    const q = comm.allReduce(after, { ...T, op: 'max' });
    await Promise.all([p, q]);
    if (after[0] !== size - 1) problems.push(`async allReduce after sync ops gave ${after[0]}`);
    return problems;
  });
  await check('sync/reduceScatterSync, allGatherSync, reduceSync', async () => {
    const problems = [];
    const x = new Int32Array(size * 5).map((_, i) => i + rank);
    const y = new Int32Array(5);
    comm.reduceScatterSync(x, y, T);
    for (let j = 0; j < 5; j++) {
      const want = size * (rank * 5 + j) + (size * (size - 1)) / 2;
      if (y[j] !== want) { problems.push(`reduceScatterSync y[${j}]=${y[j]} want ${want}`); break; }
    }
    const g = new Float32Array(3 * size);
    comm.allGatherSync(new Float32Array([rank, rank + 0.5, -rank]), g, T);
    for (let q = 0; q < size; q++) {
      if (g[3 * q] !== q || g[3 * q + 1] !== q + 0.5 || g[3 * q + 2] !== -q) { problems.push(`allGatherSync block ${q} wrong`); break; }
    }
    const r = new Float64Array([rank + 1, 2]);
    comm.reduceSync(r, { ...T, root: size - 1, op: 'prod' });
    const fact = Array.from({ length: size }, (_, i) => i + 1).reduce((u, v) => u * v, 1);
    if (rank === size - 1 && (r[0] !== fact || r[1] !== 2 ** size)) problems.push(`reduceSync gave ${r[0]}, ${r[1]}`);
    if (rank !== size - 1 && (r[0] !== rank + 1 || r[1] !== 2)) problems.push('reduceSync modified a non-root input');
    return problems;
  });
}

if (sections.includes('misc')) {
  await check('misc/many async ops in flight complete in order', async () => {
    const problems = [];
    const xs = Array.from({ length: 40 }, (_, k) => new Int32Array(1 + ((k * 37) % 200)).fill(rank + k));
    const bs = Array.from({ length: 10 }, (_, k) => new Float64Array(50).fill(rank === k % size ? k : -1));
    const pending = [];
    xs.forEach((x, k) => {
      pending.push(comm.allReduce(x, T));
      if (k % 4 === 0) pending.push(comm.broadcast(bs[k / 4], { ...T, root: (k / 4) % size }));
    });
    await Promise.all(pending);
    xs.forEach((x, k) => {
      const want = (size * (size - 1)) / 2 + size * k;
      if (!x.every((v) => v === want)) problems.push(`allReduce ${k} gave ${x[0]} want ${want}`);
    });
    bs.forEach((b, k) => { if (!b.every((v) => v === k)) problems.push(`broadcast ${k} gave ${b[0]}`); });
    return problems;
  });
  await check('misc/a burst of queued allreduces of every dtype, op and small size, with larger ops among them, matches the reference', async () => {
    // At 2 ranks the queued small allreduces travel as batches (several ops'
    // data in one message); a larger allreduce, a broadcast and an allGather
    // in between must see the stream exactly where the batch left it.
    const problems = [];
    const sizes = [0, 1, 2, 3, 7, 13, 31, 64, 257, 1000];
    const LARGE = 70_003;  // more than a 256 KiB slot: the ring, not one hop
    const checks = [];
    const pending = [];
    const statsBefore = comm.stats().allReduce ?? { count: 0, messagesSent: 0 };
    let small = 0;
    for (let k = 0; k < 300; k++) {
      if (k === 100) {
        const c = { dtype: 'float32', op: 'sum', seed: 9000 };
        const x = makeInput(c, rank, LARGE);
        pending.push(comm.allReduce(x, T));
        checks.push(() => ['large allReduce', x, reduced(c, size, LARGE), c.dtype]);
      }
      if (k === 150) {
        const c = { dtype: 'int32', op: null, seed: 9001 };
        const b = rank === 1 % size ? makeInput(c, 0, 333) : new Int32Array(333);
        pending.push(comm.broadcast(b, { ...T, root: 1 % size }));
        checks.push(() => ['broadcast', b, makeInput(c, 0, 333), c.dtype]);
      }
      if (k === 200) {
        const c = { dtype: 'float64', op: null, seed: 9002 };
        const y = new Float64Array(5 * size);
        pending.push(comm.allGather(makeInput(c, rank, 5), y, T));
        const want = new Float64Array(5 * size);
        for (let q = 0; q < size; q++) want.set(makeInput(c, q, 5), 5 * q);
        checks.push(() => ['allGather', y, want, c.dtype]);
      }
      const c = { dtype: DTYPES[k % DTYPES.length], op: OPS[(k >> 3) % OPS.length], seed: 7000 + k };
      const count = sizes[(k * 7) % sizes.length];
      const x = makeInput(c, rank, count);
      const out = k % 2 ? new x.constructor(count) : undefined;
      pending.push(comm.allReduce(x, { ...T, ...dtypeOption(c.dtype), op: c.op, ...(out ? { out } : {}) }));
      checks.push(() => [`allReduce ${k} (${count} ${c.dtype} ${c.op}${out ? ', out of place' : ''})`, out ?? x, reduced(c, size, count), c.dtype]);
      small++;
    }
    await Promise.all(pending);
    for (const f of checks) {
      const [what, got, want, dtype] = f();
      const d = firstDifference(got, want, dtype);
      if (d) problems.push(`${what}: ${d}`);
    }
    const after = comm.stats().allReduce;
    const ops = after.count - statsBefore.count, messages = after.messagesSent - statsBefore.messagesSent;
    if (ops !== small + 1) problems.push(`stats counted ${ops} allreduces, want ${small + 1}`);
    // The burst's small allreduces are queued before the engine sees any of
    // them, so at 2 ranks they must not cost a message each.
    if (size === 2 && messages >= ops / 2) problems.push(`${messages} messages for ${ops} allreduces: the burst was not batched`);
    return problems;
  });
  await check('misc/a Node Buffer is uint8, with a Uint8Array out and in place', async () => {
    const problems = [];
    const x = Buffer.alloc(301, rank + 200); // (rank + 200) mod 256 per element
    const out = new Uint8Array(301);
    await comm.allReduce(x, { ...T, out });
    let want = 0;
    for (let q = 0; q < size; q++) want = (want + q + 200) & 0xff;
    if (!out.every((v) => v === want)) problems.push(`out[0]=${out[0]} want ${want}`);
    if (!x.every((v) => v === ((rank + 200) & 0xff))) problems.push('x modified');
    await comm.allReduce(x, { ...T, op: 'max' });
    if (!x.every((v) => v === ((size - 1 + 200) & 0xff))) problems.push(`in place max gave ${x[0]}`);
    return problems;
  });
}

if (sections.includes('barrier')) {
  await comm.barrier(T);
  // The last rank arrives 150 ms late; nobody may leave before it arrived.
  for (const form of ['barrier', 'barrierSync']) {
    if (rank === size - 1) await sleep(150);
    const arrive = Date.now();
    if (form === 'barrier') await comm.barrier(T);
    else comm.barrierSync(T);
    const leave = Date.now();
    results[`barrier/${form}`] = { errors: [], arrive, leave };
  }
}

if (sections.includes('invalid')) {
  await comm.barrier(T);
  await check('invalid/rejected on every rank, then the communicator still works', async () => {
    const problems = [];
    const expectInvalid = async (what, p, mention) => {
      try {
        await p;
        problems.push(`${what}: resolved`);
      } catch (e) {
        if (!(e instanceof InvalidArgumentError)) problems.push(`${what}: ${e?.name}: ${e?.message}`);
        else if (!e.message.includes(mention)) problems.push(`${what}: message does not name ${mention}: ${e.message}`);
      }
    };
    await expectInvalid('bad op', comm.allReduce(new Float32Array(4), { op: 'mean' }), 'op');
    await expectInvalid('reduceScatter length', comm.reduceScatter(new Float32Array(size * 4 + 1), new Float32Array(4)), '`x`');
    await expectInvalid('root out of range', comm.broadcast(new Float32Array(4), { root: size }), 'root');
    await expectInvalid('peer out of range', comm.send(new Float32Array(4), size), 'to');
    await expectInvalid('unsupported algorithm', comm.reduceScatter(new Float32Array(size * 4), new Float32Array(4), { algorithm: 'bcube' }), 'ring');
    const x = new Float32Array(1000).fill(rank);
    await comm.allReduce(x, T);
    if (!x.every((v) => v === (size * (size - 1)) / 2)) problems.push(`allReduce afterwards gave ${x[0]}`);
    return problems;
  });
}

const binding = loadBinding();
writeFileSync(path.join(outDir, `rank${rank}.json`), JSON.stringify({
  rank, size, table: tableName, tuning: comm.tuning, simdActive: binding.buildInfo().simdActive, ms: Date.now() - started, results,
}));
// Leave only once every rank has written its results, i.e. finished every
// op: a peer's destroy() while this rank still waits in its last collective
// fails that collective with PeerLostError (see the it.fails repro in the
// test), so no collective can serve as the final handshake.
const deadline = Date.now() + OP_TIMEOUT_MS;
while (![...Array(size).keys()].every((q) => existsSync(path.join(outDir, `rank${q}.json`)))) {
  if (Date.now() > deadline) throw new Error('the other ranks never wrote their results');
  await sleep(20);
}
await comm.destroy();
