// One rank of a completion-moderation scenario for test/completionCoalescing.test.ts.
//
//   node coalesce-worker.mjs <scenario>
//
// The test sets RINGTREE_COALESCE_US so that finished collectives are held
// while others wait behind them (whatever the machine's core count). Each
// rank reports `RESULT {json}` lines on stdout; the test asserts on them.
import { init } from '../../dist/index.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
let myRank = Number(process.env.RANK ?? -1);
function report(event, extra = {}) {
  process.stdout.write(`RESULT ${JSON.stringify({ rank: myRank, event, ...extra })}\n`);
}

const comm = await init();
myRank = comm.rank;
const { rank, size } = comm;

/**
 * Issue `ops` (`{ issue, check }`: `issue` returns the collective's own
 * Promise, `check` tests its data) all at once; returns, per op in settle
 * order, `{ i, ok, name?, code? }`. Every op's callback sits at the same
 * depth of Promise reactions, so the settle order is the delivery order.
 */
async function settleOrder(ops) {
  const order = [];
  await Promise.all(ops.map(({ issue, check }, i) => issue().then(
    () => { order.push({ i, ok: true }); check?.(); },
    (e) => { order.push({ i, ok: false, name: e?.name, code: e?.code }); },
  )));
  return order;
}

/** An all-gather of `count` per rank whose blocks say which op and rank wrote them. */
function allGatherOp(i, count, wrong) {
  const x = new Float32Array(count).fill(i * 16 + rank);
  const y = new Float32Array(count * size);
  return {
    issue: () => comm.allGather(x, y),
    check: () => {
      for (let p = 0; p < size; p++) {
        if (y[p * count] !== i * 16 + p || y[(p + 1) * count - 1] !== i * 16 + p) wrong.push({ i, p, got: y[p * count] });
      }
    },
  };
}

const scenarios = {
  // Many collectives of several kinds and sizes in flight: every one settles,
  // in issue order, with the right data.
  async order() {
    const wrong = [];
    const ops = [];
    for (let i = 0; i < 120; i++) {
      switch (i % 4) {
        case 0: ops.push(allGatherOp(i, i % 8 === 0 ? 64 * 1024 : 1000 + i, wrong)); break;
        case 1: {
          const x = new Float32Array(256 * 1024).fill(rank === 0 ? i : -1);
          ops.push({
            issue: () => comm.broadcast(x, { root: 0 }),
            check: () => { if (x[0] !== i || x[x.length - 1] !== i) wrong.push({ i, got: x[0] }); },
          });
          break;
        }
        case 2: {
          const x = new Float32Array(4096).fill(rank + i);
          const want = size * i + (size * (size - 1)) / 2;
          ops.push({
            issue: () => comm.allReduce(x),
            check: () => { if (x[0] !== want || x[x.length - 1] !== want) wrong.push({ i, got: x[0] }); },
          });
          break;
        }
        default: ops.push({ issue: () => comm.barrier() });
      }
    }
    const order = await settleOrder(ops);
    report('order', { order: order.map((o) => o.i), failed: order.filter((o) => !o.ok), wrong });
    await comm.destroy();
  },

  // Awaited collectives where rank `size - 1` always arrives last (it waits
  // 3 ms before each): the others are already running the op, so a small one
  // runs on its calling thread (stats().ranInline) and must give the same
  // data as the engine's thread. A large one (400 KB) never runs inline.
  async lastArriver() {
    const late = rank === size - 1;
    const wrong = [];
    const expectEq = (what, got, want) => { if (got !== want) wrong.push({ what, got, want }); };
    comm.resetStats();
    for (let i = 0; i < 30; i++) {
      if (late) await sleep(3);
      const root = i % size;
      switch (i % 5) {
        case 0: {
          const count = 1000 + i;
          const x = new Float32Array(count).fill(i * 16 + rank), y = new Float32Array(count * size);
          await comm.allGather(x, y);
          for (let p = 0; p < size; p++) expectEq(`allGather ${i} block ${p}`, y[(p + 1) * count - 1], i * 16 + p);
          break;
        }
        case 1: {
          const x = new Float32Array(777).fill(rank === root ? i : -1);
          await comm.broadcast(x, { root });
          expectEq(`broadcast ${i}`, x[776], i);
          break;
        }
        case 2: {
          const x = new Float32Array(500 * size).fill(rank + i), y = new Float32Array(500);
          await comm.reduceScatter(x, y);
          expectEq(`reduceScatter ${i}`, y[499], size * i + (size * (size - 1)) / 2);
          break;
        }
        case 3: {
          const x = new Float64Array(333).fill(rank + 1);
          await comm.reduce(x, { root, op: 'max' });
          if (rank === root) expectEq(`reduce ${i}`, x[332], size);
          break;
        }
        default: await comm.barrier();
      }
    }
    const small = comm.stats();
    comm.resetStats();
    for (let i = 0; i < 6; i++) {
      if (late) await sleep(3);
      const x = new Float32Array(100_000).fill(rank === 0 ? i : -1);
      await comm.broadcast(x, { root: 0 });
      expectEq(`large broadcast ${i}`, x[99_999], i);
    }
    const large = comm.stats();
    const inline = (st) => Object.fromEntries(['allGather', 'broadcast', 'reduceScatter', 'reduce', 'barrier'].map((k) => [k, st[k].ranInline]));
    report('lastArriver', { late, wrong, small: inline(small), large: large.broadcast.ranInline });
    await comm.destroy();
  },

  // A held completion must reach JS even when the op queued behind it cannot
  // run yet: rank 1 issues the second all-gather only after rank 0 told it
  // (point to point) that its first all-gather resolved. Holding the first
  // until the second finishes would deadlock until the receive times out.
  async bounded() {
    const wrong = [];
    const first = allGatherOp(1, 128 * 1024, wrong);
    const second = allGatherOp(2, 128 * 1024, wrong);
    const flag = new Int32Array(1);
    if (rank === 0) {
      const a = first.issue().then(first.check);
      const b = second.issue().then(second.check); // queued behind `a`: `a` finishes with `b` waiting
      let bSettled = false;
      b.then(() => { bSettled = true; }, () => { bSettled = true; });
      await a;
      report('first', { secondSettledFirst: bSettled });
      flag[0] = 1;
      for (let p = 1; p < size; p++) await comm.send(flag, p, { timeoutMs: 20_000 });
      await b;
    } else {
      await first.issue().then(first.check);
      await comm.recv(flag, 0, { timeoutMs: 20_000 });
      report('told', { flag: flag[0] });
      await second.issue().then(second.check);
    }
    report('bounded', { wrong });
    await comm.destroy();
  },

  // Rank `size - 1` takes part in the first 10 all-gathers only, then
  // aborts: on the other ranks the first 10 resolve (the 10th was held:
  // 10 more wait behind it) and every later one rejects.
  async abort() {
    const wrong = [];
    const mine = rank === size - 1 ? 10 : 20;
    const ops = [];
    for (let i = 0; i < mine; i++) ops.push(allGatherOp(i, 32 * 1024, wrong));
    if (rank === size - 1) {
      const order = await settleOrder(ops);
      await sleep(300); // the others hold op 9 by now, with op 10 queued behind it
      comm.abort('test');
      report('abort', { order: order.map((o) => o.i), failed: order.filter((o) => !o.ok), wrong });
      await sleep(1_000);
    } else {
      const order = await settleOrder(ops);
      report('abort', { order: order.map((o) => o.i), oks: order.filter((o) => o.ok).map((o) => o.i), failed: order.filter((o) => !o.ok), wrong });
    }
    await comm.destroy();
  },

  // Rank 0 destroys its communicator while its first 10 all-gathers are
  // held (5 more wait behind them that no peer ever joins): the 10 resolve,
  // the rest reject with AbortedError, nothing is left pending. Rank 1 tells
  // rank 0 (point to point) when its own 10 are done.
  async destroy() {
    const wrong = [];
    const mine = rank === 0 ? 15 : 10;
    const ops = [];
    for (let i = 0; i < mine; i++) ops.push(allGatherOp(i, 32 * 1024, wrong));
    const flag = new Int32Array(1);
    if (rank === 0) {
      const settled = settleOrder(ops);
      await comm.recv(flag, 1, { timeoutMs: 20_000 });
      await sleep(300);
      await comm.destroy();
      const order = await settled;
      report('destroy', { order: order.map((o) => o.i), oks: order.filter((o) => o.ok).map((o) => o.i), failed: order.filter((o) => !o.ok), wrong });
    } else {
      const order = await settleOrder(ops);
      if (rank === 1) await comm.send(flag, 0, { timeoutMs: 20_000 });
      report('destroy', { order: order.map((o) => o.i), oks: order.filter((o) => o.ok).map((o) => o.i), failed: order.filter((o) => !o.ok), wrong });
      await sleep(1_500); // leave after rank 0
      await comm.destroy();
    }
  },
};

const run = scenarios[process.argv[2]];
if (!run) {
  report('usage', { message: `unknown scenario ${process.argv[2]}` });
  process.exit(2);
}
await run();
report('done');
