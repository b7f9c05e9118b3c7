// Completion moderation (RINGTREE_COALESCE_US) across real processes: a
// collective that finishes while others wait behind it may be held so that
// one wake-up of the JS thread settles several, but no completion may be
// lost, reordered, held past its bound, or left pending by an abort or a
// destroy(). By default the engine holds where the ranks' threads (a
// collective and a JS thread each) outnumber the cores; RINGTREE_COALESCE_US
// forces a window where a case needs one whatever the machine. The last case
// pins the other short cut: a small awaited collective runs on the calling
// thread when its peers are already in it. Each case spawns ranks of
// test/workers/coalesce-worker.mjs and has a hard deadline after which its
// processes are SIGKILLed and it fails.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cleanEnv, freePort, onLines } from './processes.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const worker = path.join(repoRoot, 'test', 'workers', 'coalesce-worker.mjs');

interface Settled { i: number; ok: boolean; name?: string; code?: string }
interface Result {
  rank: number; event: string; order?: number[]; oks?: number[]; failed?: Settled[]; wrong?: unknown[];
  secondSettledFirst?: boolean; flag?: number; late?: boolean; small?: Record<string, number>; large?: number;
}
interface Run { results: Result[]; codes: (number | null)[]; output: string; timedOut: boolean }

let jobCounter = 0;

async function runRanks(n: number, scenario: string, env: Record<string, string>, deadlineMs: number): Promise<Run> {
  const port = await freePort();
  const jobId = `ctest${process.pid}x${++jobCounter}x${Date.now().toString(36)}`;
  const children: ChildProcess[] = [];
  const results: Result[] = [];
  const codes: (number | null)[] = new Array(n).fill(null);
  let output = '';
  let timedOut = false;
  const finished = Array.from({ length: n }, (_, rank) => new Promise<void>((resolve) => {
    const child = spawn(process.execPath, [worker, scenario], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: cleanEnv({
        RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RINGTREE_JOB_ID: jobId, ...env,
      }),
    });
    children.push(child);
    onLines(child.stdout!, (line) => {
      output += `[${rank}] ${line}\n`;
      const m = /^RESULT (\{.*\})$/.exec(line);
      if (m) results.push(JSON.parse(m[1]!) as Result);
    });
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { output += `[${rank} stderr] ${chunk}`; });
    child.on('close', (code) => {
      codes[rank] = code;
      resolve();
    });
  }));
  const timer = setTimeout(() => {
    timedOut = true;
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }, deadlineMs);
  await Promise.all(finished);
  clearTimeout(timer);
  return { results, codes, output, timedOut };
}

function resultOf(run: Run, rank: number, event: string): Result {
  const r = run.results.find((x) => x.rank === rank && x.event === event);
  if (!r) expect.fail(`rank ${rank} reported no "${event}"; output:\n${run.output}`);
  return r;
}

function finishedCleanly(run: Run, n: number): void {
  expect(run.timedOut, `the run hit its deadline (a completion was lost or held without bound); output:\n${run.output}`).toBe(false);
  for (let r = 0; r < n; r++) {
    expect(run.codes[r], `rank ${r} exit code; output:\n${run.output}`).toBe(0);
    resultOf(run, r, 'done');
  }
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, k) => a + k);

// 4 ranks, like the 2-core machines where the holds matter; 60 s holds end
// only when the queue drains, on failure or on destroy, which is what these
// cases pin (a hold that missed one of those would outlast the deadline).
const LONG_HOLD = { RINGTREE_COALESCE_US: '60000000' };

describe('completion moderation (RINGTREE_COALESCE_US)', () => {
  for (const [label, env, ranks] of [
    ['1 ms holds', { RINGTREE_COALESCE_US: '1000' }, 4],
    ['holds until the queue drains', LONG_HOLD, 4],
    ['holds off', { RINGTREE_COALESCE_US: '0' }, 4],
    ['the default', {}, 4],
    // On 2 or 3 cores the default holds here too (4 threads: a collective
    // and a JS thread per rank) while the engine spins.
    ['the default', {}, 2],
  ] as const) {
    it(`settles 120 in-flight collectives of 4 kinds in issue order with the right data, ${ranks} ranks (${label})`, async () => {
      const run = await runRanks(ranks, 'order', env, 60_000);
      finishedCleanly(run, ranks);
      for (let r = 0; r < ranks; r++) {
        const res = resultOf(run, r, 'order');
        expect(res.failed, `rank ${r}`).toEqual([]);
        expect(res.wrong, `rank ${r}`).toEqual([]);
        expect(res.order, `rank ${r} settle order`).toEqual(range(0, 120));
      }
    });
  }

  it('delivers a held completion while the op behind it cannot start (the hold is bounded), 3 ranks', async () => {
    // Rank 0's first all-gather finishes with its second queued; the peers
    // issue their second only after rank 0 saw its first resolve.
    const run = await runRanks(3, 'bounded', { RINGTREE_COALESCE_US: '200000' }, 40_000);
    finishedCleanly(run, 3);
    expect(resultOf(run, 0, 'first').secondSettledFirst).toBe(false);
    for (let r = 1; r < 3; r++) expect(resultOf(run, r, 'told').flag).toBe(1);
    for (let r = 0; r < 3; r++) expect(resultOf(run, r, 'bounded').wrong, `rank ${r}`).toEqual([]);
  });

  it("resolves the held completions and rejects every later op when a peer aborts, 4 ranks", async () => {
    const run = await runRanks(4, 'abort', LONG_HOLD, 40_000);
    finishedCleanly(run, 4);
    const aborter = resultOf(run, 3, 'abort');
    expect(aborter.order).toEqual(range(0, 10));
    expect(aborter.failed).toEqual([]);
    for (let r = 0; r < 3; r++) {
      const res = resultOf(run, r, 'abort');
      expect(res.wrong, `rank ${r}`).toEqual([]);
      expect(res.order, `rank ${r} settle order`).toEqual(range(0, 20));
      expect(res.oks, `rank ${r} resolved`).toEqual(range(0, 10));
      expect(res.failed!.map((f) => f.i), `rank ${r} rejected`).toEqual(range(10, 20));
      for (const f of res.failed!) expect(f.name, `rank ${r} op ${f.i}`).toBe('AbortedError');
    }
  });

  it('resolves the held completions and rejects the queued ops on destroy(), 3 ranks', async () => {
    const run = await runRanks(3, 'destroy', LONG_HOLD, 40_000);
    finishedCleanly(run, 3);
    const res = resultOf(run, 0, 'destroy');
    expect(res.wrong).toEqual([]);
    expect(res.order, 'settle order').toEqual(range(0, 15));
    expect(res.oks, 'resolved').toEqual(range(0, 10));
    expect(res.failed!.map((f) => f.i), 'rejected').toEqual(range(10, 15));
    for (const f of res.failed!) expect(f.name, `op ${f.i}`).toBe('AbortedError');
    for (let r = 1; r < 3; r++) {
      const peer = resultOf(run, r, 'destroy');
      expect(peer.oks, `rank ${r}`).toEqual(range(0, 10));
      expect(peer.wrong, `rank ${r}`).toEqual([]);
    }
  });
});

describe('small awaited collectives on the calling thread (stats().ranInline)', () => {
  it('runs them inline on the rank that arrives last, with the same data; never a 400 KB one, 3 ranks', async () => {
    const run = await runRanks(3, 'lastArriver', {}, 60_000);
    finishedCleanly(run, 3);
    for (let r = 0; r < 3; r++) {
      const res = resultOf(run, r, 'lastArriver');
      expect(res.wrong, `rank ${r}`).toEqual([]);
      expect(res.large, `rank ${r}: large broadcasts inline`).toBe(0);
    }
    // 6 of each kind; the others are in the op 3 ms before the late rank
    // arrives, so nearly all of its ops run inline (a loaded machine may
    // leave an early rank behind now and then).
    const late = resultOf(run, 2, 'lastArriver');
    expect(late.late).toBe(true);
    for (const [kind, n] of Object.entries(late.small!)) expect(n, kind).toBeGreaterThanOrEqual(3);
  });
});
