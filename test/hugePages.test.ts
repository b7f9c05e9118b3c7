// Transparent huge pages for large host arrays (InitOptions.hugePages): the
// engine asks Linux to put the whole 2 MiB pages inside an array of 4 MiB or
// more on huge pages before a CPU collective. Checked in process at world
// size 1 through the process's AnonHugePages (/proc/self/smaps_rollup):
// vitest runs one file at a time in its own fork, so nothing else of ours
// moves that figure meanwhile.
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { allocHost, init, InvalidArgumentError, type Communicator } from '../lib/index.js';
import { launchResults } from './processes.js';

const THP = '/sys/kernel/mm/transparent_hugepage/enabled';
const kernelAllows = existsSync(THP) && !readFileSync(THP, 'utf8').includes('[never]');
const MiB = 1 << 20;

/** Bytes of this process's anonymous memory on huge pages. */
function anonHugeBytes(): number {
  const m = /^AnonHugePages:\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
  if (!m) throw new Error('no AnonHugePages in /proc/self/smaps_rollup');
  return Number(m[1]) * 1024;
}

/** A fresh array with a pattern that a page move must keep. */
function patterned(bytes: number): Float32Array {
  const a = new Float32Array(bytes / 4);
  for (let i = 0; i < a.length; i++) a[i] = (i % 1000) - 500;
  return a;
}

function expectPattern(a: Float32Array, scale = 1): void {
  let bad = -1;
  for (let i = 0; i < a.length && bad < 0; i++) if (a[i] !== ((i % 1000) - 500) * scale) bad = i;
  expect(bad, `first element that changed (of ${a.length})`).toBe(-1);
}

describe('huge pages for large host arrays (world size 1, in process)', () => {
  let comm: Communicator | undefined;
  afterEach(async () => {
    await comm?.destroy();
    comm = undefined;
  });

  // First, so that no array advised by a later case can be collapsed by
  // khugepaged while this one watches the figure.
  it('hugePages: false leaves arrays on small pages', async () => {
    comm = await init({ rank: 0, worldSize: 1, hugePages: false });
    expect(comm.tuning.hugePages).toBe(false);
    const x = patterned(16 * MiB);
    const before = anonHugeBytes();
    await comm.allReduce(x);
    comm.allReduceSync(x);
    expect(anonHugeBytes() - before).toBeLessThan(2 * MiB);
    expectPattern(x);
  });

  it.runIf(kernelAllows)('an allreduce puts a 16 MiB array on huge pages and keeps its contents', async () => {
    comm = await init({ rank: 0, worldSize: 1 });
    expect(comm.tuning.hugePages).toBe(true);
    const x = patterned(16 * MiB);
    const before = anonHugeBytes();
    await comm.allReduce(x, { op: 'avg' });
    // At least the 7 whole 2 MiB pages any 16 MiB array holds, less one a
    // fragmented machine may fail to find.
    expect(anonHugeBytes() - before).toBeGreaterThanOrEqual(12 * MiB);
    expectPattern(x);
    // Seen again within a second: no second collapse, same result.
    await comm.allReduce(x, { op: 'sum' });
    expectPattern(x);
  });

  it.runIf(kernelAllows)('out of place, both arrays move (all-gather, synchronous)', async () => {
    comm = await init({ rank: 0, worldSize: 1 });
    const x = patterned(8 * MiB);
    const y = new Float32Array(x.length);
    const before = anonHugeBytes();
    comm.allGatherSync(x, y);
    expect(anonHugeBytes() - before).toBeGreaterThanOrEqual(10 * MiB);
    expectPattern(x);
    expectPattern(y);
  });

  it.runIf(kernelAllows)('arrays under 4 MiB are left alone', async () => {
    comm = await init({ rank: 0, worldSize: 1 });
    const x = patterned(4 * MiB - 4096);
    const before = anonHugeBytes();
    await comm.allReduce(x);
    expect(anonHugeBytes() - before).toBeLessThan(2 * MiB);
    expectPattern(x);
  });

  it.runIf(!kernelAllows)('where the kernel has transparent huge pages off, tuning says so', async () => {
    comm = await init({ rank: 0, worldSize: 1 });
    expect(comm.tuning.hugePages).toBe(false);
  });

  it('a hugePages that is not a boolean is rejected, naming it', async () => {
    const err = await init({ rank: 0, worldSize: 1, hugePages: 'yes' as unknown as boolean }).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/hugePages/);
  });
});

describe('allocHost', () => {
  it('returns zeroed arrays of the dtype\'s kind and length, at the start of their own buffer', () => {
    const cases = [['float32', Float32Array], ['float64', Float64Array], ['float16', Uint16Array], ['bfloat16', Uint16Array],
      ['int8', Int8Array], ['uint8', Uint8Array], ['int32', Int32Array], ['int64', BigInt64Array]] as const;
    for (const [dtype, Kind] of cases) {
      for (const length of [0, 1, 1023, 300_000]) {
        const a = allocHost(dtype, length);
        expect(a, `${dtype} x ${length}`).toBeInstanceOf(Kind);
        expect(a.length).toBe(length);
        expect(a.byteOffset).toBe(0);
        expect(a.buffer.byteLength).toBe(length * a.BYTES_PER_ELEMENT);
        expect(a.every((v: number | bigint) => v === 0 || v === 0n)).toBe(true);
      }
    }
  });

  it.runIf(kernelAllows)('puts even a 1 MiB array on a huge page once touched, and a 6 MiB one on three', () => {
    let before = anonHugeBytes();
    const small = allocHost('float32', 262_144);
    (small as Float32Array).fill(3);
    expect(anonHugeBytes() - before).toBeGreaterThanOrEqual(2 * MiB);
    before = anonHugeBytes();
    const large = allocHost('uint8', 6 * MiB);
    (large as Uint8Array).fill(7);
    expect(anonHugeBytes() - before).toBeGreaterThanOrEqual(6 * MiB);
    expect(small[262_143]).toBe(3);
    expect(large[6 * MiB - 1]).toBe(7);
  });

  it('works as a collective buffer, views included', async () => {
    const comm = await init({ rank: 0, worldSize: 1 });
    try {
      const x = allocHost('float32', 3 * MiB);
      for (let i = 0; i < x.length; i++) x[i] = (i % 1000) - 500;
      const out = allocHost('float32', 3 * MiB);
      await comm.allReduce(x.subarray(1, 1 + MiB), { out: out.subarray(5, 5 + MiB) });
      for (let i = 0; i < MiB; i += 4099) expect(out[5 + i]).toBe(((i + 1) % 1000) - 500);
    } finally {
      await comm.destroy();
    }
  });

  it('rejects an unknown dtype or a bad length, naming it', () => {
    expect(() => allocHost('float8' as never, 4)).toThrow(InvalidArgumentError);
    expect(() => allocHost('float8' as never, 4)).toThrow(/dtype/);
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 60]) {
      expect(() => allocHost('float32', bad)).toThrow(InvalidArgumentError);
      expect(() => allocHost('float32', bad)).toThrow(/length/);
    }
  });
});

describe('the 2-rank all-gather on huge pages (2 ranks)', () => {
  interface PairResult { rank: number; hugePages: boolean; allocHost: { messagesPerOp: number; ok: boolean }; plain: { messagesPerOp: number; ok: boolean } }
  const run = (env: Record<string, string>) => launchResults<PairResult>('test/workers/pair-huge.mjs', 2, env);

  it.runIf(kernelAllows)('allocHost blocks on both ranks go direct every time; plain 1 MiB blocks still explore the slots', () => {
    for (const r of run({})) {
      expect(r.hugePages).toBe(true);
      expect(r.allocHost.ok && r.plain.ok, 'data').toBe(true);
      // The offer and the "done": one kernel read each way, no slot traffic.
      expect(r.allocHost.messagesPerOp, `rank ${r.rank}`).toBe(2);
      expect(r.plain.messagesPerOp, `rank ${r.rank}`).toBeGreaterThan(2);
    }
  });

  it('with hugePages off, allocHost blocks are chosen for like any others', () => {
    for (const r of run({ RINGTREE_HUGE_PAGES: '0' })) {
      expect(r.hugePages).toBe(false);
      expect(r.allocHost.ok && r.plain.ok, 'data').toBe(true);
      expect(r.allocHost.messagesPerOp, `rank ${r.rank}`).toBeGreaterThan(2);
    }
  });
});

describe('writers on huge pages skip their outboxes (4 ranks)', () => {
  // Every rank, the even ranks, or none on allocHost arrays: each reader must
  // follow each writer's choice (address or outbox) within one op.
  it('broadcasts and all-gathers of 1 MiB blocks are right whichever ranks are on huge pages', () => {
    for (const r of launchResults<{ rank: number; hugePages: boolean; wrong: string[] }>('test/workers/outbox-huge.mjs', 4, {})) {
      expect(r.hugePages).toBe(kernelAllows);
      expect(r.wrong, `rank ${r.rank}`).toEqual([]);
    }
  });
});

describe('the 2-rank broadcast on huge pages (2 ranks)', () => {
  interface BroadcastResult { rank: number; hugePages: boolean; wrong: string[]; rootMessagesPerOp: Record<string, number> }
  const run = (env: Record<string, string>) => launchResults<BroadcastResult>('test/workers/broadcast-huge.mjs', 2, env);

  it('is right from either root, in place and out of place, whichever ranks are on huge pages', () => {
    const results = run({});
    for (const r of results) expect(r.wrong, `rank ${r.rank}`).toEqual([]);
    // Each rank was the root of half the cases.
    const messages = Object.assign({}, ...results.map((r) => r.rootMessagesPerOp)) as Record<string, number>;
    // The root's publish, and where it wrote half of the reader's output,
    // its "done" with it. Plain arrays may count as on huge pages (the
    // engine collapses arrays of 4 MiB or more and trusts that range for a
    // second): no claim about them.
    const both = Object.entries(messages).filter(([key]) => key.startsWith('both'));
    expect(both).toHaveLength(10);
    for (const [key, perOp] of both) expect(perOp, key).toBe(kernelAllows && key.endsWith(' in') ? 2 : 1);
  });

  it('with hugePages off, no root writes into its reader', () => {
    for (const r of run({ RINGTREE_HUGE_PAGES: '0' })) {
      expect(r.hugePages).toBe(false);
      expect(r.wrong, `rank ${r.rank}`).toEqual([]);
      for (const [key, perOp] of Object.entries(r.rootMessagesPerOp)) expect(perOp, key).toBe(1);
    }
  });
});
