import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../lib/init.js';
import { freePort } from './processes.js';
import { BackendUnavailableError, InvalidArgumentError, TimeoutError } from '../lib/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const worker = path.join(root, 'test', 'workers', 'init-env.mjs');

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
}, 120_000);

interface RankResult { ok: boolean; rank?: number; size?: number; sum?: number; name?: string; message?: string; code?: string; broadcastOk?: boolean; outboxBytes?: number; stderr?: string }

function runRank(env: Record<string, string>, timeoutMs = 30_000): Promise<RankResult> {
  return new Promise((resolve, reject) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) =>
      !/^(RANK|WORLD_SIZE|LOCAL_RANK|LOCAL_WORLD_SIZE|MASTER_ADDR|MASTER_PORT|OMPI_|SLURM_|TORCHELASTIC_|RINGTREE_)/.test(k)));
    const p = spawn(process.execPath, [worker], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => { p.kill('SIGKILL'); reject(new Error(`rank timed out; stdout ${out} stderr ${err}`)); }, timeoutMs);
    p.on('exit', () => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (!line) reject(new Error(`no result; stdout ${out} stderr ${err}`));
      else resolve({ ...(JSON.parse(line) as RankResult), stderr: err });
    });
  });
}

async function group(n: number, envFor: (r: number) => Record<string, string>): Promise<RankResult[]> {
  return Promise.all(Array.from({ length: n }, (_, r) => runRank(envFor(r))));
}

function expectSum(results: RankResult[], n: number): void {
  for (const [r, res] of results.entries()) {
    expect(res, JSON.stringify(res)).toMatchObject({ ok: true, rank: r, size: n, sum: (n * (n + 1)) / 2 });
  }
}

describe('init() rendezvous from each launcher\'s variables', () => {
  it('torchrun: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT', async () => {
    const port = await freePort();
    const res = await group(3, (r) => ({ RANK: String(r), WORLD_SIZE: '3', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) }));
    expectSum(res, 3);
    // The default outboxes, as the segment has them.
    for (const r of res) expect(r.outboxBytes).toBe(8 * 1024 * 1024);
  });

  it('Open MPI: OMPI_COMM_WORLD_RANK / _SIZE', async () => {
    const port = await freePort();
    const res = await group(2, (r) => ({ OMPI_COMM_WORLD_RANK: String(r), OMPI_COMM_WORLD_SIZE: '2', MASTER_PORT: String(port) }));
    expectSum(res, 2);
  });

  it('Slurm: SLURM_PROCID / SLURM_NTASKS', async () => {
    const port = await freePort();
    const res = await group(2, (r) => ({ SLURM_PROCID: String(r), SLURM_NTASKS: '2', MASTER_PORT: String(port) }));
    expectSum(res, 2);
  });

  it('under torchrun\'s elastic agent the store moves to MASTER_PORT + 1 (the agent owns MASTER_PORT)', async () => {
    // Hold MASTER_PORT like the agent would, and make sure MASTER_PORT + 1 is
    // free right now (other jobs on this machine pick ports too).
    const listen = (p: number) => new Promise<Server | undefined>((res) => {
      const srv = createServer();
      srv.once('error', () => res(undefined));
      srv.listen(p, '127.0.0.1', () => res(srv));
    });
    let port = 0;
    let agent: Server | undefined;
    for (let i = 0; i < 50 && !agent; i++) {
      port = await freePort();
      if (port >= 65535) continue;
      const held = await listen(port);
      const probe = held ? await listen(port + 1) : undefined;
      if (held && probe) {
        await new Promise<void>((res) => probe.close(() => res()));
        agent = held;
      } else {
        held?.close();
      }
    }
    expect(agent).toBeDefined();
    try {
      const res = await group(2, (r) => ({ RANK: String(r), WORLD_SIZE: '2', MASTER_PORT: String(port), TORCHELASTIC_RUN_ID: 'job' }));
      expectSum(res, 2);
    } finally {
      agent?.close();
    }
  });

  it('a wrong token on one rank fails its init with the token named, not a hang', async () => {
    const port = await freePort();
    const res = await Promise.all([
      runRank({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: String(port), RINGTREE_TOKEN: 'a'.repeat(32), TEST_INIT_TIMEOUT_MS: '3000' }),
      runRank({ RANK: '1', WORLD_SIZE: '2', MASTER_PORT: String(port), RINGTREE_TOKEN: 'b'.repeat(32), TEST_INIT_TIMEOUT_MS: '3000' }),
    ]);
    expect(res[1].ok).toBe(false);
    expect(res[1].name).toBe('BackendUnavailableError');
    expect(res[1].message).toMatch(/token/i);
    expect(res[0].ok).toBe(false);
    expect(res[0].name).toBe('TimeoutError');
    expect(res[0].message).toMatch(/rank 1/);
  });
});

describe('init() and a /dev/shm that is too small', () => {
  it('is a BackendUnavailableError with the --shm-size remedy before any memory is taken, and the peer times out', async () => {
    const port = await freePort();
    // 8 slots x 4 GiB x 2 classes x 2 channels = 128 GiB: more than /dev/shm holds anywhere here.
    const env = { WORLD_SIZE: '2', MASTER_PORT: String(port), RINGTREE_SLOT_BYTES: String(4 * 1024 ** 3), TEST_INIT_TIMEOUT_MS: '3000' };
    const [r0, r1] = await Promise.all([runRank({ ...env, RANK: '0' }), runRank({ ...env, RANK: '1' })]);
    expect(r0.ok).toBe(false);
    expect(r0.name).toBe('BackendUnavailableError');
    expect(r0.message).toMatch(/\/dev\/shm has only .* free/);
    expect(r0.message).toMatch(/--shm-size/);
    expect(r1.ok).toBe(false);
  });
});

describe('init() and a /dev/shm with room for the slots but not the outboxes', () => {
  it('runs without outboxes, says so on the creating rank\'s stderr, and the broadcast is right', async () => {
    const port = await freePort();
    // Outboxes of 1 TiB each do not fit; the slots (3 ranks: 24 MiB) do.
    const env = { WORLD_SIZE: '3', MASTER_PORT: String(port), RINGTREE_OUTBOX_BYTES: String(1024 ** 4), TEST_BROADCAST_ELEMS: String(300_000) };
    const res = await group(3, (r) => ({ ...env, RANK: String(r) }));
    expectSum(res, 3);
    for (const r of res) expect(r.broadcastOk).toBe(true);
    // tuning reports what the segment has, on every rank.
    for (const r of res) expect(r.outboxBytes).toBe(0);
    const warned = res.filter((r) => /no room in \/dev\/shm for 3 outboxes .*running without them/.test(r.stderr ?? ''));
    expect(warned).toHaveLength(1);
  });
});

describe('init() in process', () => {
  it('world size 1 needs no rendezvous and runs collectives', async () => {
    const comm = await init({ rank: 0, worldSize: 1 });
    const x = new Float64Array([1.5, -2]);
    await comm.allReduce(x, { op: 'avg' });
    expect([...x]).toEqual([1.5, -2]);
    expect(comm.size).toBe(1);
    await comm.destroy();
  });

  it('synchronous calls reach the flight recorder with the engine\'s start and end times, in place or not', async () => {
    const comm = await init({ rank: 0, worldSize: 1 });
    const x = new Int32Array([3, 4]);
    const out = new Int32Array(2);
    const before = Date.now();
    comm.allReduceSync(x);                    // in place (the native side reads one view)
    comm.allReduceSync(x, { out });           // out of place
    comm.broadcastSync(x, { root: 0 });
    const after = Date.now();
    expect([...x]).toEqual([3, 4]);
    expect([...out]).toEqual([3, 4]);
    const ops = comm.recentOps();
    expect(ops.map((o) => [o.kind, o.seq, o.state])).toEqual([['allReduce', 1, 'completed'], ['allReduce', 2, 'completed'], ['broadcast', 3, 'completed']]);
    for (const op of ops) {
      // Engine clock (CLOCK_MONOTONIC) turned into epoch ms: within the calls, give or take a clock tick.
      expect(op.startedAt).toBeGreaterThanOrEqual(before - 2);
      expect(op.endedAt!).toBeGreaterThanOrEqual(op.startedAt);
      expect(op.endedAt!).toBeLessThanOrEqual(after + 2);
    }
    expect(ops[1]!.startedAt).toBeGreaterThanOrEqual(ops[0]!.endedAt!);
    await comm.destroy();
  });

  it('a repeated synchronous call is re-read when its arrays, their lengths or its options change', async () => {
    // The second of two identical calls reuses the first one's parsed
    // arguments (runSyncAgain): data pointers included. Any change must
    // make it parse again, or it would read or write memory it no longer owns.
    const comm = await init({ rank: 0, worldSize: 1 });
    const x = new Float32Array([1, 2, 3]);
    const out = new Float32Array(3);
    const o: { out?: Float32Array } = { out };
    comm.allReduceSync(x, o);
    x[0] = 5;
    comm.allReduceSync(x, o);                       // repeated: same pointers, new data
    expect([...out]).toEqual([5, 2, 3]);
    const out2 = new Float32Array(3);
    o.out = out2;                                    // same options object, new output
    comm.allReduceSync(x, o);
    expect([...out2]).toEqual([5, 2, 3]);
    out.fill(-1);
    comm.allReduceSync(x, o);
    expect([...out]).toEqual([-1, -1, -1]);          // the old output is left alone
    // A detached input reads as empty: a 0-element allreduce, which must not
    // copy from the transferred memory (still alive in the clone).
    out2.fill(-1);
    const moved = structuredClone(x.buffer, { transfer: [x.buffer] });
    expect(x.length).toBe(0);
    expect(() => comm.allReduceSync(x, o)).toThrow(/`out` has 3 elements but `x` has 0/);
    expect([...out2]).toEqual([-1, -1, -1]);
    expect([...new Float32Array(moved)]).toEqual([5, 2, 3]);
    // A detached output is rejected before a byte moves.
    const y = new Float32Array([7, 8]);
    const yOut = new Float32Array(2);
    const oy = { out: yOut };
    comm.allReduceSync(y, oy);
    const movedOut = structuredClone(yOut.buffer, { transfer: [yOut.buffer] });
    new Float32Array(movedOut).fill(-1);
    expect(() => comm.allReduceSync(y, oy)).toThrow(InvalidArgumentError);
    expect([...new Float32Array(movedOut)]).toEqual([-1, -1]);
    // A resizable buffer shrunk under a length-tracking view.
    const rab = new (ArrayBuffer as unknown as new (n: number, o: { maxByteLength: number }) => ArrayBuffer & { resize(n: number): void })(16, { maxByteLength: 16 });
    const z = new Float32Array(rab);
    z.set([1, 2, 3, 4]);
    const oz = {};
    comm.allReduceSync(z, oz);                       // in place
    comm.allReduceSync(z, oz);
    rab.resize(8);
    comm.allReduceSync(z, oz);
    expect(z.length).toBe(2);
    expect([...z]).toEqual([1, 2]);
    expect(comm.recentOps().at(-1)!.count).toBe(2);
    await comm.destroy();
  });

  it('a loop of synchronous calls without options parses its arguments once (the default options are one object)', async () => {
    const comm = await init({ rank: 0, worldSize: 1 });
    const native = (comm as unknown as { native: Record<string, (...a: unknown[]) => unknown> }).native;
    const counts = { parsed: 0, repeated: 0 };
    const parse = native.runSyncArgs!, again = native.runSyncAgain!;
    native.runSyncArgs = (...a: unknown[]) => { counts.parsed++; return parse.apply(native, a); };
    native.runSyncAgain = () => { counts.repeated++; return again.apply(native, []); };
    const x = new Float64Array([1, 2]);
    for (let i = 0; i < 5; i++) comm.allReduceSync(x);
    for (let i = 0; i < 5; i++) comm.barrierSync();
    for (let i = 0; i < 5; i++) comm.broadcastSync(x);
    expect(counts).toEqual({ parsed: 3, repeated: 12 });
    expect([...x]).toEqual([1, 2]);
    await comm.destroy();
  });

  it('synchronous ops keep their recorded times on CLOCK_MONOTONIC past the TSC clock\'s calibration and re-anchoring', async () => {
    // The engine times ops with the TSC (native/cpu/Clock.cc): clock_gettime
    // for the first 20 ms, then extrapolated and re-anchored every second.
    // 1.5 s of calls covers all three; each sampled op must lie within the
    // Date.now() readings around it, and ops must not go back in time.
    const comm = await init({ rank: 0, worldSize: 1 });
    const x = new Float32Array([1, 2]);
    const options = {};
    const start = Date.now();
    let checked = 0;
    let lastEnd = -Infinity;
    while (Date.now() - start < 1500) {
      for (let i = 0; i < 200; i++) comm.allReduceSync(x, options);
      const before = Date.now();
      comm.allReduceSync(x, options);
      const after = Date.now();
      const op = comm.recentOps().at(-1)!;
      expect(op.startedAt).toBeGreaterThanOrEqual(before - 2);
      expect(op.endedAt!).toBeGreaterThanOrEqual(op.startedAt);
      expect(op.endedAt!).toBeLessThanOrEqual(after + 2);
      expect(op.startedAt).toBeGreaterThanOrEqual(lastEnd - 0.05);
      lastEnd = op.endedAt!;
      checked++;
    }
    expect(checked).toBeGreaterThan(10);
    const ops = comm.recentOps();
    for (let i = 1; i < ops.length; i++) expect(ops[i]!.startedAt).toBeGreaterThanOrEqual(ops[i - 1]!.endedAt! - 0.05);
    await comm.destroy();
  });

  it('a port in use is a BackendUnavailableError naming the address and the remedy', async () => {
    const busy = createServer();
    const port = await new Promise<number>((res) => busy.listen(0, '127.0.0.1', () => res((busy.address() as { port: number }).port)));
    try {
      const err = await init({ rank: 0, worldSize: 2, masterPort: port, initTimeoutMs: 2000 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect((err as Error).message).toContain(String(port));
      expect((err as BackendUnavailableError).remedy).toMatch(/MASTER_PORT/);
    } finally {
      busy.close();
    }
  });

  it('no master: a non-zero rank times out naming the step and the address', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const err = await init({ rank: 1, worldSize: 2, masterPort: port, initTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toContain(`127.0.0.1:${port}`);
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('bad options are InvalidArgumentError naming the option', async () => {
    await expect(init({ rank: 2, worldSize: 2 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(init({ rank: 0, worldSize: 1, slotBytes: 3 })).rejects.toThrow(/slotBytes/);
    await expect(init({ rank: 0, worldSize: 1, backend: 'gpu' as 'cpu' })).rejects.toThrow(/backend/);
  });

  it("backend 'nccl' without a GPU build is BackendUnavailableError", async () => {
    await expect(init({ rank: 0, worldSize: 1, backend: 'nccl' })).rejects.toBeInstanceOf(BackendUnavailableError);
  });
});
