// One rank of a failure scenario for test/failures.test.ts.
//
//   node fail-worker.mjs <scenario> [arg]
//
// Every rank reports what it saw as `RESULT {json}` lines on stdout (the
// launcher prefixes them with `[rank r] `); the test asserts on those. Times
// are Date.now() values so the test can compare events across processes.
import { allocHost, init } from '../../dist/index.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function serialize(e) {
  if (!(e instanceof Error)) return { name: typeof e, message: String(e) };
  return {
    name: e.name, code: e.code, message: e.message, op: e.op, rank: e.rank, peer: e.peer,
    timeoutMs: e.timeoutMs, seq: e.seq, remedy: e.remedy, flightRecorder: e.flightRecorder,
  };
}

let myRank = Number(process.env.RANK ?? -1);
function report(event, extra = {}) {
  // Pipes are synchronous on Linux, so a line written here survives a SIGKILL that follows.
  process.stdout.write(`RESULT ${JSON.stringify({ rank: myRank, event, at: Date.now(), ...extra })}\n`);
}

/** Await `p`; report `{ event, ok, ms, error? }` and return the error (or null). */
async function capture(event, p, extra = {}) {
  const t0 = Date.now();
  try {
    await p;
    report(event, { ok: true, ms: Date.now() - t0, ...extra });
    return null;
  } catch (e) {
    report(event, { ok: false, ms: Date.now() - t0, error: serialize(e), ...extra });
    return e;
  }
}

const [scenario, arg] = process.argv.slice(2);
const comm = await init();
myRank = comm.rank;
const { rank, size } = comm;
const last = size - 1;
report('ready', { pid: process.pid, size, jobId: comm.jobId });

const scenarios = {
  // 1. RINGTREE_FAULT kills one rank mid-allReduce (set by the test, e.g. "1,allReduce,2").
  //    arg 'selfkill': survivors SIGKILL themselves instead of destroy(), so nothing but
  //    the engine's early unlink can have cleaned /dev/shm.
  async fault() {
    const small = new Float32Array(1024).fill(1);
    await capture('warmup', comm.allReduce(small));
    // 32 MiB by default: many chunks. FAULT_ELEMS: another size (1 MiB goes through the outboxes).
    // FAULT_HUGE=1: on allocHost (huge-page) arrays, where 2 ranks read each other's with the kernel.
    // FAULT_OP=broadcast: a broadcast from rank 0 instead (2 ranks on huge pages: the root writes
    // half of the reader's output).
    const elems = Number(process.env.FAULT_ELEMS ?? 8 * 1024 * 1024);
    const big = (process.env.FAULT_HUGE === '1' ? allocHost('float32', elems) : new Float32Array(elems)).fill(rank + 1);
    report('before-fault');
    await capture('faulted', process.env.FAULT_OP === 'broadcast' ? comm.broadcast(big) : comm.allReduce(big));
    await capture('after', comm.allReduce(small));
    await capture('after-barrier', comm.barrier());
    if (arg === 'selfkill') process.kill(process.pid, 'SIGKILL');
    await comm.destroy();
  },

  // 1b. The root of a 2-rank broadcast on huge pages freezes (RINGTREE_FAULT=0,broadcast,2,stop:
  //     SIGSTOP right after its first message) before it writes half of the reader's output.
  //     The reader times out, takes its array back (fills it with -7), lets the root go on
  //     (SIGCONT) and watches the array: the root must not write into it any more.
  async 'stopped-root'() {
    const pids = new Int32Array(size);
    await comm.allGather(new Int32Array([process.pid]), pids);
    const big = allocHost('float32', 256 * 1024).fill(rank === 0 ? 5 : -1);
    report('before-fault');
    await capture('faulted', comm.broadcast(big, { timeoutMs: 1500 }));
    if (rank === 1) {
      big.fill(-7);
      process.kill(pids[0], 'SIGCONT');
      await sleep(2000);
      const changed = big.findIndex((v) => v !== -7);
      report('untouched', { ok: changed < 0, firstChanged: changed, value: changed < 0 ? -7 : big[changed] });
    }
    await comm.destroy();
  },

  // 2. Mismatched collectives: the last rank differs in one respect (arg).
  async mismatch() {
    const odd = rank === last;
    const t = { timeoutMs: 4_000 }; // mismatches are found in ms; a deadlock shows as a timeout
    let p;
    switch (arg) {
      case 'count': p = comm.allReduce(new Float32Array(odd ? 17 : 16), t); break;
      case 'dtype': p = comm.allReduce(odd ? new Float64Array(16) : new Float32Array(16), t); break;
      case 'op': p = comm.allReduce(new Float32Array(16), { ...t, op: odd ? 'max' : 'sum' }); break;
      case 'root-broadcast': p = comm.broadcast(new Float32Array(16), { ...t, root: odd ? 1 : 0 }); break;
      // 2 ranks on huge pages: the root writes half of the reader's output (after the reader's publish is checked).
      case 'count-broadcast-huge': p = comm.broadcast(allocHost('float32', odd ? 65_537 : 65_536), t); break;
      case 'root-broadcast-huge': p = comm.broadcast(allocHost('float32', 65_536), { ...t, root: odd ? 1 : 0 }); break;
      case 'root-reduce': p = comm.reduce(new Float32Array(16), { ...t, root: odd ? 1 : 0 }); break;
      case 'kind': p = odd ? comm.broadcast(new Float32Array(16), t) : comm.allReduce(new Float32Array(16), t); break;
      case 'kind-barrier': p = odd ? comm.barrier(t) : comm.allReduce(new Float32Array(16), t); break;
      case 'count-allgather': p = comm.allGather(new Float32Array(odd ? 17 : 16), new Float32Array((odd ? 17 : 16) * comm.size), t); break;
      case 'count-allgather-big': p = comm.allGather(new Float32Array(odd ? 16411 : 16410), new Float32Array((odd ? 16411 : 16410) * comm.size), t); break;
      case 'count-reducescatter': p = comm.reduceScatter(new Float32Array((odd ? 17 : 16) * comm.size), new Float32Array(odd ? 17 : 16), t); break;
      case 'count-allreduce-huge': p = comm.allReduce(allocHost('float32', odd ? 600_001 : 600_000), t); break;
      case 'count-allreduce-big': p = comm.allReduce(new Float32Array(odd ? 100_001 : 100_000), t); break;
      case 'count-reducescatter-big': p = comm.reduceScatter(new Float32Array((odd ? 16411 : 16410) * comm.size), new Float32Array(odd ? 16411 : 16410), t); break;
      case 'kind-reducescatter': p = odd ? comm.allReduce(new Float32Array(16 * comm.size), t) : comm.reduceScatter(new Float32Array(16 * comm.size), new Float32Array(16), t); break;
      case 'kind-allgather': p = odd ? comm.broadcast(new Float32Array(16 * comm.size), t) : comm.allGather(new Float32Array(16), new Float32Array(16 * comm.size), t); break;
      default: throw new Error(`unknown mismatch ${arg}`);
    }
    await capture('mismatch', p);
    await capture('after', comm.allReduce(new Float32Array(16), { timeoutMs: 5_000 }));
    await comm.destroy();
  },

  // 3. Rank 1 aborts while rank 0 waits in an allReduce rank 1 never joins.
  async abort() {
    if (rank === 1) {
      await sleep(500);
      report('aborting');
      comm.abort('test');
      await capture('after', comm.allReduce(new Float32Array(4)));
      await sleep(2_000); // stay alive: rank 0 must learn of the abort, not of a lost peer
    } else {
      await capture('waiting', comm.allReduce(new Float32Array(4)));
      await capture('after', comm.allReduce(new Float32Array(4)));
    }
    await comm.destroy();
  },

  // 4 + 9. The last rank sleeps while the others time out; the flight recorder is dumped.
  async timeout() {
    const x = new Float32Array(64).fill(1);
    await capture('warm1', comm.allReduce(x));
    await capture('warm2', comm.barrier());
    await capture('warm3', comm.broadcast(x, { root: 0 }));
    if (rank === last) {
      await sleep(2_500);
      await capture('late', comm.allReduce(x, { timeoutMs: 1_000 }));
    } else {
      await capture('timed-out', comm.allReduce(x, { timeoutMs: 1_000 }));
      await capture('after', comm.allReduce(x, { timeoutMs: 1_000 }));
      report('recent-ops', { ops: comm.recentOps() });
    }
    await comm.destroy();
  },

  // 5. Per-op AbortSignal.
  async signal() {
    const x = new Float32Array(4).fill(rank + 1);
    if (rank === 0) {
      const pre = AbortSignal.abort(new Error('already'));
      await capture('pre-aborted', comm.allReduce(new Float32Array(4), { signal: pre }));
      await capture('pre-aborted-recv', comm.recv(new Float32Array(4), 1, { signal: pre }));
      report('recent-ops', { ops: comm.recentOps() });
    }
    // Not poisoned: a normal collective still works on both ranks.
    await capture('normal', comm.allReduce(x));
    report('normal-result', { values: Array.from(x) });
    if (rank === 0) {
      await capture('signalled', comm.allReduce(new Float32Array(4), { signal: AbortSignal.timeout(300) }));
      await capture('after', comm.allReduce(new Float32Array(4)));
    } else {
      await sleep(1_500);
      await capture('after', comm.allReduce(new Float32Array(4), { timeoutMs: 5_000 }));
    }
    await comm.destroy();
  },

  // 6. A peer calls destroy() (and stays alive) while rank 0 waits for it in a collective.
  async graceful() {
    await capture('warmup', comm.allReduce(new Float32Array(4)));
    if (rank === 1) {
      await sleep(500);
      report('destroying');
      await comm.destroy();
      await sleep(3_000);
      return;
    }
    await capture('waiting', comm.allReduce(new Float32Array(4)));
    await capture('after', comm.allReduce(new Float32Array(4)));
    await comm.destroy();
  },

  // 7a. recv size differs from the send.
  async 'p2p-size'() {
    if (rank === 0) {
      await capture('send', comm.send(new Float32Array(10).fill(1), 1, { timeoutMs: 5_000 }));
      await sleep(500);
      await capture('after', comm.send(new Float32Array(10), 1, { timeoutMs: 5_000 }));
    } else {
      await capture('recv', comm.recv(new Float32Array(12), 0, { timeoutMs: 5_000 }));
      await capture('after', comm.recv(new Float32Array(12), 0, { timeoutMs: 5_000 }));
    }
    await sleep(300);
    await comm.destroy();
  },

  // 7b. recv from a peer that never sends.
  async 'p2p-timeout'() {
    if (rank === 0) {
      await capture('recv', comm.recv(new Float32Array(8), 1, { timeoutMs: 500 }));
      await capture('after', comm.recv(new Float32Array(8), 1, { timeoutMs: 500 }));
    } else {
      await sleep(1_500);
      await capture('after', comm.send(new Float32Array(8), 0, { timeoutMs: 500 }));
    }
    await comm.destroy();
  },

  // 7c. A receiver that falls behind: rank 1 sends three 8 MiB messages at once (more than a
  //     channel's slots hold); rank 0 starts receiving 800 ms later. Each send's resolution
  //     time is reported, and every message is checked. RINGTREE_P2P_BUFFER_BYTES (set by the
  //     test) caps what rank 0 buffers without a receive. arg 'never': rank 0 never receives,
  //     and rank 1's sends have 1 s.
  async 'p2p-backpressure'() {
    const count = 2 * 1024 * 1024;
    const message = (k) => Float32Array.from({ length: count }, (_, i) => k * 1e6 + (i % 9973));
    await comm.barrier();
    if (arg === 'never') {
      if (rank === 1) {
        await capture('send-0', comm.send(message(0), 0, { tag: 5, timeoutMs: 1_000 }));
        await capture('send-1', comm.send(message(1), 0, { tag: 5, timeoutMs: 1_000 }));
      } else {
        await sleep(2_500);
      }
      await comm.destroy();
      return;
    }
    if (rank === 1) {
      await Promise.all([0, 1, 2].map((k) => comm.send(message(k), 0, { tag: 5, timeoutMs: 20_000 }).then(() => report(`sent-${k}`))));
    } else {
      await sleep(800);
      report('recv-start');
      const wrong = [];
      for (let k = 0; k < 3; k++) {
        const into = new Float32Array(count);
        await comm.recv(into, 1, { tag: 5, timeoutMs: 20_000 });
        const want = message(k);
        const at = into.findIndex((v, i) => v !== want[i]);
        if (at >= 0) wrong.push(`message ${k} differs at ${at}`);
      }
      report('received', { wrong });
    }
    await comm.barrier();
    await comm.destroy();
  },

  // 8a. destroy() with pending ops: a collective nobody joins, a queued one, a recv.
  async 'destroy-pending'() {
    if (rank === 0) {
      const ops = [
        capture('pending-allReduce', comm.allReduce(new Float32Array(4))),
        capture('pending-queued', comm.allReduce(new Float32Array(4))),
        capture('pending-recv', comm.recv(new Float32Array(4), 1)),
      ];
      await sleep(300);
      report('destroying');
      await comm.destroy();
      report('destroyed');
      await Promise.all(ops);
      await capture('after', comm.allReduce(new Float32Array(4)));
    } else {
      await sleep(1_500);
      await capture('peer-after', comm.allReduce(new Float32Array(4), { timeoutMs: 2_000 }));
      await comm.destroy();
    }
  },

  // 8b. Forgets destroy(): the process must exit by itself after its last await.
  async forget() {
    await capture('work', comm.allReduce(new Float32Array(1024).fill(1)));
    await capture('work2', comm.barrier());
    report('last-await');
  },

  // A synchronous collective straight after init() (see the skipped case in failures.test.ts).
  async 'sync-after-init'() {
    const t0 = Date.now();
    try {
      comm.barrierSync({ timeoutMs: 3_000 });
      report('sync', { ok: true, ms: Date.now() - t0 });
    } catch (e) {
      report('sync', { ok: false, ms: Date.now() - t0, error: serialize(e) });
    }
    await comm.destroy();
  },

  // 10. The last rank gets SIGSTOPped by the test after 'stop-me'.
  async heartbeat() {
    await capture('warmup', comm.allReduce(new Float32Array(4)));
    if (rank === last) {
      report('stop-me');
      await sleep(30_000);
      return;
    }
    await capture('waiting', comm.allReduce(new Float32Array(4)));
    await capture('after', comm.allReduce(new Float32Array(4)));
    await comm.destroy();
  },
};

const run = scenarios[scenario];
if (!run) {
  report('usage', { message: `unknown scenario ${scenario}` });
  process.exit(2);
}
await run();
report('done');
