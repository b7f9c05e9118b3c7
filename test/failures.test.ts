// Failure handling across real processes: every surviving rank must reject
// with a typed error, promptly, and nothing may hang. Each case spawns ranks
// of test/workers/fail-worker.mjs (directly, or under `ringtree launch`), reads
// their `RESULT {json}` lines and asserts on them. Every run has a hard
// deadline after which all its processes are SIGKILLed and the case fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, cliPath } from './fixtures/launch/cli.js';
import { cleanEnv, freePort, onLines } from './processes.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const worker = path.join(repoRoot, 'test', 'workers', 'fail-worker.mjs');
const addon = path.join(repoRoot, 'build', 'Release', 'ringtree.node');

interface WireError {
  name: string; code?: string; message: string; op?: string; rank?: number; peer?: number;
  timeoutMs?: number; seq?: number; remedy?: string; flightRecorder?: string;
}

/** One `RESULT` line of a rank. `at` is the rank's Date.now() when it wrote the line. */
interface Result {
  rank: number; event: string; at: number; ok?: boolean; ms?: number; error?: WireError;
  [key: string]: unknown;
}

interface RankExit { rank: number; code: number | null; signal: NodeJS.Signals | null; at: number }

interface Run {
  results: Result[];
  exits: RankExit[];
  output: string;
  /** True when the deadline passed and the processes were SIGKILLed: a hang. */
  timedOut: boolean;
  jobId: string;
  /** Launcher runs only. */
  launcherCode?: number | null;
  launcherStderr?: string;
}

let recorderDir = '';

beforeAll(() => {
  buildCli();
  if (!existsSync(addon)) {
    spawnSync('bash', [path.join(repoRoot, 'scripts', 'build-native.sh')], { cwd: repoRoot, stdio: 'ignore', timeout: 600_000 });
  }
  if (!existsSync(addon)) throw new Error(`the native addon ${addon} is missing; run scripts/build-native.sh`);
  recorderDir = mkdtempSync(path.join(os.tmpdir(), 'ringtree-failures-'));
}, 600_000);

afterAll(() => {
  if (recorderDir) rmSync(recorderDir, { recursive: true, force: true });
});

/** The test runner's environment without any rendezvous or ringtree variables. */
function baseEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return cleanEnv({ RINGTREE_FLIGHT_RECORDER_DIR: recorderDir, ...extra });
}

let jobCounter = 0;
function newJobId(): string {
  return `ftest${process.pid}x${++jobCounter}x${Date.now().toString(36)}`;
}

function parseResults(text: string): Result[] {
  const out: Result[] = [];
  for (const line of text.split('\n')) {
    const m = /^(?:\[rank \d+\] )?RESULT (\{.*\})$/.exec(line);
    if (m) out.push(JSON.parse(m[1]!) as Result);
  }
  return out;
}

function killAll(children: ChildProcess[]): void {
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null || !c.pid) continue;
    try { process.kill(c.pid, 'SIGCONT'); } catch { /* gone */ }
    try { process.kill(c.pid, 'SIGKILL'); } catch { /* gone */ }
  }
}

interface SpawnOptions {
  env?: Record<string, string>;
  /** Hard deadline for the whole run; past it everything is SIGKILLed and `timedOut` is set. */
  deadlineMs: number;
  /** Called for each result as it arrives (e.g. to SIGSTOP a rank). */
  onResult?: (r: Result, children: ChildProcess[]) => void;
}

/** Spawn `n` ranks directly ("also without the launcher"): env rendezvous, no launcher cleanup. */
async function spawnRanks(n: number, args: string[], o: SpawnOptions): Promise<Run> {
  const port = await freePort();
  const jobId = newJobId();
  const children: ChildProcess[] = [];
  const results: Result[] = [];
  const exits: RankExit[] = [];
  let output = '';
  let timedOut = false;
  const finished = Array.from({ length: n }, (_, rank) => new Promise<void>((resolve) => {
    const child = spawn(process.execPath, [worker, ...args], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: baseEnv({
        RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n),
        MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), RINGTREE_JOB_ID: jobId, ...o.env,
      }),
    });
    children.push(child);
    onLines(child.stdout!, (line) => {
      output += `[${rank}] ${line}\n`;
      for (const r of parseResults(line)) {
        results.push(r);
        o.onResult?.(r, children);
      }
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => { output += `[${rank} stderr] ${chunk}`; });
    child.on('close', (code, signal) => {
      exits.push({ rank, code, signal, at: Date.now() });
      resolve();
    });
  }));
  const timer = setTimeout(() => { timedOut = true; killAll(children); }, o.deadlineMs);
  await Promise.all(finished);
  clearTimeout(timer);
  exits.sort((a, b) => a.rank - b.rank);
  return { results, exits, output, timedOut, jobId };
}

/** Run the ranks under `ringtree launch --nproc n`. */
async function launchRanks(n: number, args: string[], o: SpawnOptions): Promise<Run> {
  const child = spawn(process.execPath, [cliPath, 'launch', '--nproc', String(n), '--grace-ms', '5000', worker, ...args], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: baseEnv(o.env ?? {}), detached: true,
  });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout!.setEncoding('utf8').on('data', (c: string) => { stdout += c; });
  child.stderr!.setEncoding('utf8').on('data', (c: string) => { stderr += c; });
  const timer = setTimeout(() => {
    timedOut = true;
    try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
  }, o.deadlineMs);
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  clearTimeout(timer);
  const results = parseResults(stdout);
  const jobId = String(results.find((r) => r.event === 'ready')?.jobId ?? '');
  return { results, exits: [], output: stdout + stderr, timedOut, jobId, launcherCode: code, launcherStderr: stderr };
}

/** The result of `event` on `rank`; fails the test with the whole output when absent. */
function resultOf(run: Run, rank: number, event: string): Result {
  const r = run.results.find((x) => x.rank === rank && x.event === event);
  if (!r) expect.fail(`rank ${rank} reported no "${event}"; output:\n${run.output}`);
  return r;
}

/** Assert that `event` on `rank` rejected with error class `name` and return the error. */
function rejected(run: Run, rank: number, event: string, name: string, code: string): WireError {
  const r = resultOf(run, rank, event);
  expect(r.ok, `rank ${rank} "${event}" should have rejected with ${name}; output:\n${run.output}`).toBe(false);
  expect(r.error!.name, `rank ${rank} "${event}": ${r.error!.message}`).toBe(name);
  expect(r.error!.code).toBe(code);
  expect(r.error!.rank).toBe(rank);
  return r.error!;
}

function noHang(run: Run): void {
  expect(run.timedOut, `the run hit its deadline (a hang); output:\n${run.output}`).toBe(false);
}

function shmLeftovers(jobId: string): string[] {
  expect(jobId).not.toBe('');
  if (!existsSync('/dev/shm')) return [];
  return readdirSync('/dev/shm').filter((f) => f.startsWith(`ringtree-${jobId}-`));
}

const PEER_LOST = 'ERR_RINGTREE_PEER_LOST';
const MISMATCH = 'ERR_RINGTREE_COLLECTIVE_MISMATCH';
const TIMEOUT = 'ERR_RINGTREE_TIMEOUT';
const ABORTED = 'ERR_RINGTREE_ABORTED';

describe('a rank dies mid-allReduce (RINGTREE_FAULT)', () => {
  // Rank 1 SIGKILLs itself right after its first message of collective 2, a 32 MiB allReduce.
  const FAULT = { RINGTREE_FAULT: '1,allReduce,2' };

  function expectSurvivorsSawPeerLost(run: Run): void {
    const died = resultOf(run, 1, 'before-fault').at; // the death follows within milliseconds
    expect(run.results.some((r) => r.rank === 1 && r.event === 'faulted')).toBe(false);
    for (const rank of [0, 2]) {
      const e = rejected(run, rank, 'faulted', 'PeerLostError', PEER_LOST);
      expect(e.peer).toBe(1);
      expect(e.message).toMatch(/rank 1 \(pid \d+\) died/);
      expect(resultOf(run, rank, 'faulted').at - died).toBeLessThan(10_000);
      // Poisoned: later calls reject at once, with the same class.
      for (const event of ['after', 'after-barrier']) {
        const later = rejected(run, rank, event, 'PeerLostError', PEER_LOST);
        expect(later.message).toMatch(/failed earlier/);
        expect(later.peer).toBe(1);
        expect(resultOf(run, rank, event).ms).toBeLessThan(200);
      }
    }
  }

  it('under the launcher: survivors get PeerLostError naming rank 1, stay poisoned, and /dev/shm is clean', async () => {
    const run = await launchRanks(3, ['fault'], { env: FAULT, deadlineMs: 40_000 });
    noHang(run);
    expectSurvivorsSawPeerLost(run);
    expect(run.launcherCode).not.toBe(0);
    expect(run.launcherStderr).toMatch(/rank 1 .*SIGKILL/);
    for (const rank of [0, 2]) expect(resultOf(run, rank, 'done')).toBeTruthy();
    expect(shmLeftovers(run.jobId)).toEqual([]);
  });

  it('in a 1 MiB allReduce through the outboxes: survivors waiting on its outbox get PeerLostError', async () => {
    // Rank 1 dies right after publishing to rank 2: rank 2 waits for its
    // outbox to fill, rank 0 for its publish.
    const run = await launchRanks(3, ['fault'], { env: { ...FAULT, FAULT_ELEMS: String(256 * 1024) }, deadlineMs: 40_000 });
    noHang(run);
    expectSurvivorsSawPeerLost(run);
    expect(shmLeftovers(run.jobId)).toEqual([]);
  });

  // 2 ranks on huge pages read (and a broadcast's root writes) each other's
  // arrays with the kernel: the survivor's kernel copy or its wait must end
  // in PeerLostError.
  for (const [what, env] of [
    ['a 4 MiB allReduce through the kernel', { RINGTREE_FAULT: '1,allReduce,2', FAULT_HUGE: '1', FAULT_ELEMS: String(1 << 20) }],
    ['a 1 MiB broadcast whose root writes half of the reader\'s output', { RINGTREE_FAULT: '1,broadcast,2', FAULT_HUGE: '1', FAULT_OP: 'broadcast', FAULT_ELEMS: String(256 * 1024) }],
  ] as const) {
    it(`2 ranks, ${what}: the survivor gets PeerLostError naming rank 1`, async () => {
      const run = await launchRanks(2, ['fault'], { env, deadlineMs: 40_000 });
      noHang(run);
      const died = resultOf(run, 1, 'before-fault').at;
      expect(run.results.some((r) => r.rank === 1 && r.event === 'faulted')).toBe(false);
      const e = rejected(run, 0, 'faulted', 'PeerLostError', PEER_LOST);
      expect(e.peer).toBe(1);
      expect(resultOf(run, 0, 'faulted').at - died).toBeLessThan(10_000);
      expect(rejected(run, 0, 'after', 'PeerLostError', PEER_LOST).message).toMatch(/failed earlier/);
      expect(shmLeftovers(run.jobId)).toEqual([]);
    });
  }

  it('2 ranks on huge pages, the broadcast\'s root frozen before it writes half of the reader\'s output: once the reader has given up, the root writes nothing into its array', async () => {
    const run = await launchRanks(2, ['stopped-root'], { env: { RINGTREE_FAULT: '0,broadcast,2,stop' }, deadlineMs: 40_000 });
    noHang(run);
    // The reader timed out waiting for the root's half (the root was stopped, not gone).
    const e = rejected(run, 1, 'faulted', 'TimeoutError', TIMEOUT);
    expect(e.message).toMatch(/timed out after 1500 ms on rank 1/);
    expect(e.peer).toBe(0);
    const untouched = resultOf(run, 1, 'untouched');
    expect(untouched, JSON.stringify(untouched)).toMatchObject({ ok: true, firstChanged: -1 });
    // Continued, the root learns of the reader's failure instead of writing.
    expect(rejected(run, 0, 'faulted', 'TimeoutError', TIMEOUT).message).toMatch(/rank 1 reported: .*timed out/);
    expect(shmLeftovers(run.jobId)).toEqual([]);
  });

  it('without the launcher, survivors SIGKILLed without destroy(): the engine unlinked its segment early', async () => {
    const run = await spawnRanks(3, ['fault', 'selfkill'], { env: FAULT, deadlineMs: 30_000 });
    noHang(run);
    expectSurvivorsSawPeerLost(run);
    // Every rank died by SIGKILL: nobody ran destroy() and no launcher cleaned up.
    expect(run.exits.map((e) => e.signal)).toEqual(['SIGKILL', 'SIGKILL', 'SIGKILL']);
    expect(shmLeftovers(run.jobId)).toEqual([]);
  });
});

describe('mismatched collectives reject with CollectiveMismatchError on every rank', () => {
  // The last rank differs in one respect; `sides` are what both descriptions must show.
  const cases: Array<{ name: string; sides: [string, string] }> = [
    { name: 'count', sides: ['count=16', 'count=17'] },
    { name: 'dtype', sides: ['float32', 'float64'] },
    { name: 'op', sides: ['sum', 'max'] },
    { name: 'kind', sides: ['allReduce(', 'broadcast('] },
    { name: 'kind-barrier', sides: ['allReduce(', 'barrier()'] },
  ];

  async function expectMismatchEverywhere(n: number, which: string, sides: [string, string], env: Record<string, string> = {}): Promise<void> {
    const run = await spawnRanks(n, ['mismatch', which], { deadlineMs: 25_000, env });
    noHang(run);
    for (let rank = 0; rank < n; rank++) {
      const e = rejected(run, rank, 'mismatch', 'CollectiveMismatchError', MISMATCH);
      expect(e.message).toMatch(/rank \d+ called .* but rank \d+ called /);
      for (const side of sides) expect(e.message).toContain(side);
      expect(resultOf(run, rank, 'mismatch').ms).toBeLessThan(5_000);
      // Poisoned afterwards.
      rejected(run, rank, 'after', 'CollectiveMismatchError', MISMATCH);
    }
  }

  for (const n of [2, 3]) {
    for (const c of cases) {
      it(`${c.name} at ${n} ranks`, () => expectMismatchEverywhere(n, c.name, c.sides));
    }
  }

  // Rooted chain collectives run a header-only verification pass around the
  // ring first, so a rank that only sends (the root) cannot finish while its
  // peers disagree, and two would-be reduce roots do not both wait.
  for (const n of [2, 3]) {
    it(`root (broadcast) at ${n} ranks`,
      () => expectMismatchEverywhere(n, 'root-broadcast', ['root=0', 'root=1']));
    it(`root (reduce) at ${n} ranks`,
      () => expectMismatchEverywhere(n, 'root-reduce', ['root=0', 'root=1']));
  }

  // 2 ranks, 256 KiB on allocHost arrays: where the calls agree, the root
  // writes half of the reader's output; a mismatch must stop it before.
  it('count (broadcast on huge pages) at 2 ranks',
    () => expectMismatchEverywhere(2, 'count-broadcast-huge', ['count=65536', 'count=65537']));
  it('root (broadcast on huge pages) at 2 ranks',
    () => expectMismatchEverywhere(2, 'root-broadcast-huge', ['root=0', 'root=1']));

  // The direct (cross-memory) paths, forced at these small sizes: the direct
  // broadcast's all-to-all header exchange stands in for the verification pass.
  const DIRECT = { RINGTREE_DIRECT_MIN_BYTES: '1' };
  for (const n of [2, 3, 4]) {
    // Broadcasts from 64 KiB (here: 1 byte) go through the root's outbox.
    it(`root (broadcast through the outbox) at ${n} ranks`,
      () => expectMismatchEverywhere(n, 'root-broadcast', ['root=0', 'root=1'], DIRECT));
    if (n > 2) {
      it(`count (allReduce through the outboxes) at ${n} ranks`,
        () => expectMismatchEverywhere(n, 'count', ['count=16', 'count=17'], DIRECT));
      it(`count (reduceScatter through the outboxes) at ${n} ranks`,
        () => expectMismatchEverywhere(n, 'count-reducescatter', ['count=16', 'count=17'], DIRECT));
      it(`kind (reduceScatter against allReduce, both through the outboxes) at ${n} ranks`,
        () => expectMismatchEverywhere(n, 'kind-reducescatter', ['reduceScatter(', 'allReduce('], DIRECT));
    }
    it(`count (direct allGather) at ${n} ranks`,
      () => expectMismatchEverywhere(n, 'count-allgather', ['count=16', 'count=17'], DIRECT));
    it(`kind (direct allGather vs direct broadcast) at ${n} ranks`,
      () => expectMismatchEverywhere(n, 'kind-allgather', ['allGather(', 'broadcast('], DIRECT));
  }
  // Two ranks above the direct threshold choose their path per op (pairAllGather); a 2-rank
  // allreduce on huge pages goes direct (pairAllReduce).
  it('count (2-rank allGather of 64 KiB blocks) at 2 ranks',
    () => expectMismatchEverywhere(2, 'count-allgather-big', ['count=16410', 'count=16411']));
  it('count (2-rank allReduce of 400 KB) at 2 ranks',
    () => expectMismatchEverywhere(2, 'count-allreduce-big', ['count=100000', 'count=100001']));
  it('count (2-rank reduceScatter of 64 KiB segments) at 2 ranks',
    () => expectMismatchEverywhere(2, 'count-reducescatter-big', ['count=16410', 'count=16411']));
  it('count (2-rank allReduce on huge pages) at 2 ranks',
    () => expectMismatchEverywhere(2, 'count-allreduce-huge', ['count=600000', 'count=600001']));
});

describe('abort, timeouts, signals', () => {
  it('abort() on rank 1 rejects rank 0\'s pending allReduce with AbortedError naming rank 1, promptly', async () => {
    const run = await spawnRanks(2, ['abort'], { deadlineMs: 20_000 });
    noHang(run);
    const abortedAt = resultOf(run, 1, 'aborting').at;
    const e = rejected(run, 0, 'waiting', 'AbortedError', ABORTED);
    expect(e.message).toMatch(/rank 1 aborted the communicator: test/);
    expect(resultOf(run, 0, 'waiting').at - abortedAt).toBeLessThan(2_000);
    expect(resultOf(run, 0, 'after').ms).toBeLessThan(200);
    rejected(run, 0, 'after', 'AbortedError', ABORTED);
    rejected(run, 1, 'after', 'AbortedError', ABORTED);
  });

  // Cases 4 and 9 share one run: ranks 0, 1 time out waiting for rank 2.
  let timeoutRun: Promise<Run> | undefined;
  const getTimeoutRun = () => (timeoutRun ??= spawnRanks(3, ['timeout'], { deadlineMs: 25_000 }));

  it('a timeout names the lagging rank on every waiting rank, and the lagging rank\'s next call rejects too', async () => {
    const run = await getTimeoutRun();
    noHang(run);
    for (const rank of [0, 1]) {
      const e = rejected(run, rank, 'timed-out', 'TimeoutError', TIMEOUT);
      expect(e.timeoutMs).toBe(1_000);
      expect(e.peer).toBe(2);
      expect(e.message).toContain('rank 2 idle after seq 3; ');
      // The other waiting rank has the same deadline: it may have timed out
      // and left seq 4 a moment before this rank looked (seen once in CI).
      const other = 1 - rank;
      const peers = /\(([^)]*)\) \[op/.exec(e.message)?.[1];
      expect(['rank 2 idle after seq 3; ranks 0, 1 in seq 4',
        `rank 2 idle after seq 3; rank ${other} idle after seq 4; rank ${rank} in seq 4`], e.message).toContain(peers);
      expect(e.remedy).toMatch(/Rank 2 never reached this collective/);
      const { ms } = resultOf(run, rank, 'timed-out');
      expect(ms).toBeGreaterThanOrEqual(950);
      expect(ms).toBeLessThan(5_000);
      rejected(run, rank, 'after', 'TimeoutError', TIMEOUT);
    }
    // Published failure: rank 2 was asleep, its next call rejects at once.
    const late = rejected(run, 2, 'late', 'TimeoutError', TIMEOUT);
    expect(late.message).toMatch(/rank 2 idle after seq 3/);
    expect(resultOf(run, 2, 'late').ms).toBeLessThan(200);
  });

  it('the flight recorder is dumped on timeout as JSON listing the recent ops with seq and state', async () => {
    const run = await getTimeoutRun();
    noHang(run);
    const e = rejected(run, 0, 'timed-out', 'TimeoutError', TIMEOUT);
    const file = path.join(recorderDir, `ringtree-flight-${run.jobId}-rank0.json`);
    expect(e.flightRecorder).toBe(file);
    const dump = JSON.parse(readFileSync(file, 'utf8')) as {
      rank: number; size: number; error: { code: string; message: string };
      peers: Array<{ rank: number; collSeq: number; alive: boolean }>;
      ops: Array<{ kind: string; seq: number; state: string; startedAt: number; endedAt?: number }>;
    };
    expect(dump.rank).toBe(0);
    expect(dump.size).toBe(3);
    expect(dump.error.code).toBe(TIMEOUT);
    expect(dump.ops.map((o) => [o.kind, o.seq, o.state])).toEqual([
      ['allReduce', 1, 'completed'],
      ['barrier', 2, 'completed'],
      ['broadcast', 3, 'completed'],
      ['allReduce', 4, 'failed'],
    ]);
    for (const op of dump.ops) expect(op.endedAt).toBeGreaterThanOrEqual(op.startedAt);
    expect(dump.peers.map((p) => p.collSeq)).toEqual([4, 4, 3]);
    // Rank 1 dumped its own view too.
    expect(existsSync(path.join(recorderDir, `ringtree-flight-${run.jobId}-rank1.json`))).toBe(true);
  });

  it('a per-op AbortSignal aborts the communicator; an already-aborted signal rejects before anything moves, without poisoning', async () => {
    const run = await spawnRanks(2, ['signal'], { deadlineMs: 20_000 });
    noHang(run);
    // Already aborted: AbortedError at once, nothing submitted, nothing recorded.
    const pre = rejected(run, 0, 'pre-aborted', 'AbortedError', ABORTED);
    expect(pre.message).toMatch(/was not started: its AbortSignal had already fired/);
    expect(resultOf(run, 0, 'pre-aborted').ms).toBeLessThan(100);
    rejected(run, 0, 'pre-aborted-recv', 'AbortedError', ABORTED);
    expect(resultOf(run, 0, 'recent-ops').ops).toEqual([]);
    // Not poisoned (documented: it rejects before anything moves): the next collective works.
    for (const rank of [0, 1]) {
      expect(resultOf(run, rank, 'normal').ok).toBe(true);
      expect(resultOf(run, rank, 'normal-result').values).toEqual([3, 3, 3, 3]);
    }
    // AbortSignal.timeout(300) on an allReduce rank 1 never joins.
    const sig = rejected(run, 0, 'signalled', 'AbortedError', ABORTED);
    expect(sig.message).toMatch(/AbortSignal fired during allReduce/);
    expect(sig.seq).toBe(2); // the engine's seq: the never-started call took none
    const { ms } = resultOf(run, 0, 'signalled');
    expect(ms).toBeGreaterThanOrEqual(250);
    expect(ms).toBeLessThan(2_000);
    // The whole communicator is aborted, on both ranks.
    rejected(run, 0, 'after', 'AbortedError', ABORTED);
    const peer = rejected(run, 1, 'after', 'AbortedError', ABORTED);
    expect(peer.message).toMatch(/rank 0 aborted the communicator/);
  });
});

describe('peers that leave, point-to-point, destroy()', () => {
  it('a peer that calls destroy() while rank 0 waits on it gives PeerLostError, not a hang', async () => {
    const run = await spawnRanks(2, ['graceful'], { deadlineMs: 20_000 });
    noHang(run);
    const e = rejected(run, 0, 'waiting', 'PeerLostError', PEER_LOST);
    expect(e.peer).toBe(1);
    expect(e.message).toMatch(/rank 1 left the communicator/);
    expect(resultOf(run, 0, 'waiting').at - resultOf(run, 1, 'destroying').at).toBeLessThan(3_000);
    rejected(run, 0, 'after', 'PeerLostError', PEER_LOST);
    expect(run.exits.map((x) => x.code)).toEqual([0, 0]);
  });

  it('a recv whose size differs from the send rejects with CollectiveMismatchError naming both sizes', async () => {
    const run = await spawnRanks(2, ['p2p-size'], { deadlineMs: 20_000 });
    noHang(run);
    const e = rejected(run, 1, 'recv', 'CollectiveMismatchError', MISMATCH);
    expect(e.message).toMatch(/expected 48 bytes but rank 0 sent 40 bytes/);
    expect(e.peer).toBe(0);
    // Published: the sender's next call rejects too (its send itself may have completed).
    rejected(run, 0, 'after', 'CollectiveMismatchError', MISMATCH);
    rejected(run, 1, 'after', 'CollectiveMismatchError', MISMATCH);
  });

  it('a recv from a peer that never sends times out with TimeoutError after timeoutMs', async () => {
    const run = await spawnRanks(2, ['p2p-timeout'], { deadlineMs: 20_000 });
    noHang(run);
    const e = rejected(run, 0, 'recv', 'TimeoutError', TIMEOUT);
    expect(e.timeoutMs).toBe(500);
    expect(e.peer).toBe(1);
    expect(e.message).toMatch(/recv from rank 1 .* timed out after 500 ms/);
    const { ms } = resultOf(run, 0, 'recv');
    expect(ms).toBeGreaterThanOrEqual(450);
    expect(ms).toBeLessThan(3_000);
    rejected(run, 0, 'after', 'TimeoutError', TIMEOUT);
    rejected(run, 1, 'after', 'TimeoutError', TIMEOUT);
  });

  // What a receiver buffers without a receive is capped (RINGTREE_P2P_BUFFER_BYTES): past
  // the cap its sender's sends wait for the receives instead of its memory growing.
  it('a receiver that falls behind buffers up to RINGTREE_P2P_BUFFER_BYTES, then holds its sender back', async () => {
    const run = await spawnRanks(2, ['p2p-backpressure'], { env: { RINGTREE_P2P_BUFFER_BYTES: String(10_000_000) }, deadlineMs: 30_000 });
    noHang(run);
    expect(resultOf(run, 0, 'received').wrong).toEqual([]);
    const start = resultOf(run, 0, 'recv-start').at;
    // The first 8 MiB fits under 10 MB and is buffered; the next two wait for their receives.
    expect(resultOf(run, 1, 'sent-0').at).toBeLessThan(start);
    expect(resultOf(run, 1, 'sent-1').at).toBeGreaterThanOrEqual(start);
    expect(resultOf(run, 1, 'sent-2').at).toBeGreaterThanOrEqual(start);
    // Under the default cap (256 MiB) all three are buffered before the receiver starts.
    const free = await spawnRanks(2, ['p2p-backpressure'], { deadlineMs: 30_000 });
    noHang(free);
    expect(resultOf(free, 0, 'received').wrong).toEqual([]);
    const freeStart = resultOf(free, 0, 'recv-start').at;
    for (const k of [0, 1, 2]) expect(resultOf(free, 1, `sent-${k}`).at).toBeLessThan(freeStart);
    // A receiver that never receives: the held-back send fails at its deadline, naming the cap.
    const never = await spawnRanks(2, ['p2p-backpressure', 'never'], { env: { RINGTREE_P2P_BUFFER_BYTES: String(10_000_000) }, deadlineMs: 30_000 });
    noHang(never);
    expect(resultOf(never, 1, 'send-0').ok).toBe(true);
    const e = rejected(never, 1, 'send-1', 'TimeoutError', TIMEOUT);
    expect(e.message).toMatch(/send to rank 0 \(tag 5, 8388608 bytes\) timed out after 1000 ms/);
    expect(e.remedy).toMatch(/RINGTREE_P2P_BUFFER_BYTES/);
  });

  it('destroy() rejects pending ops (running, queued, p2p) with AbortedError', async () => {
    const run = await spawnRanks(2, ['destroy-pending'], { deadlineMs: 20_000 });
    noHang(run);
    const destroyedAt = resultOf(run, 0, 'destroying').at;
    for (const event of ['pending-allReduce', 'pending-queued', 'pending-recv']) {
      rejected(run, 0, event, 'AbortedError', ABORTED);
      expect(resultOf(run, 0, event).at - destroyedAt).toBeLessThan(1_000);
    }
    expect(rejected(run, 0, 'after', 'AbortedError', ABORTED).message).toMatch(/destroyed/);
    // The peer is not left waiting either.
    const peer = resultOf(run, 1, 'peer-after');
    expect(peer.ok).toBe(false);
    expect([ABORTED, PEER_LOST]).toContain(peer.error!.code);
    expect(run.exits.map((x) => x.code)).toEqual([0, 0]);
  });

  it('a script that forgets destroy() still exits by itself', async () => {
    const run = await spawnRanks(2, ['forget'], { deadlineMs: 20_000 });
    noHang(run);
    for (const x of run.exits) {
      expect(x.code).toBe(0);
      expect(x.at - resultOf(run, x.rank, 'last-await').at).toBeLessThan(3_000);
    }
  });
});

describe('synchronous collectives', () => {
  // init()'s closing barrier runs through shared memory, so rank 0 cannot
  // return from init() while a peer still waits for a reply from the store
  // that rank 0's event loop serves.
  it('a barrierSync() right after init() completes on every rank', async () => {
    const run = await spawnRanks(2, ['sync-after-init'], { deadlineMs: 20_000 });
    noHang(run);
    for (const rank of [0, 1]) expect(resultOf(run, rank, 'sync').ok, run.output).toBe(true);
  });
});

describe('heartbeat', () => {
  it('a SIGSTOPped rank is lost after RINGTREE_HEARTBEAT_TIMEOUT_MS: PeerLostError on the others', async () => {
    const { run, stoppedAt } = await stopRank2(3, {});
    for (const rank of [0, 1]) {
      const e = rejected(run, rank, 'waiting', 'PeerLostError', PEER_LOST);
      expect(e.peer).toBe(2);
      expect(e.message).toMatch(/rank 2 .*no heartbeat for 1500 ms/);
      const after = resultOf(run, rank, 'waiting').at - stoppedAt;
      expect(after).toBeGreaterThanOrEqual(1_000);
      expect(after).toBeLessThan(5_000);
      rejected(run, rank, 'after', 'PeerLostError', PEER_LOST);
    }
    expect(run.exits.map((x) => x.code)).toEqual([0, 0, null]);
  });
});

/**
 * The 'heartbeat' scenario with RINGTREE_HEARTBEAT_TIMEOUT_MS=1500: rank 2
 * asks to be SIGSTOPped; once both survivors are done it is woken and killed.
 */
async function stopRank2(size: number, env: Record<string, string>): Promise<{ run: Awaited<ReturnType<typeof spawnRanks>>; stoppedAt: number }> {
  let stoppedAt = 0;
  const reported = new Set<number>();
  const run = await spawnRanks(size, ['heartbeat'], {
    env: { ...env, RINGTREE_HEARTBEAT_TIMEOUT_MS: '1500' },
    deadlineMs: 25_000,
    onResult: (r, children) => {
      if (r.event === 'stop-me') {
        process.kill(Number(resultOfPid(children, 2)), 'SIGSTOP');
        stoppedAt = Date.now();
      }
      if (r.event === 'done' && r.rank !== 2) reported.add(r.rank);
      if (reported.size === 2) {
        // The survivors are done: wake the stopped rank and kill it.
        const pid = resultOfPid(children, 2);
        try { process.kill(pid, 'SIGCONT'); process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      }
    },
  });
  noHang(run);
  expect(stoppedAt).toBeGreaterThan(0);
  return { run, stoppedAt };
}

/** The pid of the child that runs `rank` (children are pushed in rank order). */
function resultOfPid(children: ChildProcess[], rank: number): number {
  return children[rank]!.pid!;
}

// The same guarantees when peers talk TCP (RINGTREE_TRANSPORT=tcp makes every
// rank its own host): a broken connection, a silent peer, a goodbye, and a
// mismatch reach every rank without shared memory.
describe('over TCP', () => {
  const TCP = { RINGTREE_TRANSPORT: 'tcp' };

  it('a rank killed mid-allReduce: survivors get PeerLostError from the broken connection, within 10 s, and stay poisoned', async () => {
    const run = await spawnRanks(3, ['fault'], { env: { ...TCP, RINGTREE_FAULT: '1,allReduce,2' }, deadlineMs: 30_000 });
    noHang(run);
    const died = resultOf(run, 1, 'before-fault').at;
    for (const rank of [0, 2]) {
      const e = rejected(run, rank, 'faulted', 'PeerLostError', PEER_LOST);
      expect(e.peer).toBe(1);
      expect(e.message).toMatch(/rank 1/);
      expect(resultOf(run, rank, 'faulted').at - died).toBeLessThan(10_000);
      rejected(run, rank, 'after', 'PeerLostError', PEER_LOST);
    }
  });

  it('a SIGSTOPped remote rank is lost after RINGTREE_HEARTBEAT_TIMEOUT_MS', async () => {
    const { run, stoppedAt } = await stopRank2(3, TCP);
    for (const rank of [0, 1]) {
      const e = rejected(run, rank, 'waiting', 'PeerLostError', PEER_LOST);
      expect(e.peer).toBe(2);
      expect(e.message).toMatch(/rank 2 \(remote\) sent nothing for 1500 ms/);
      const after = resultOf(run, rank, 'waiting').at - stoppedAt;
      expect(after).toBeGreaterThanOrEqual(1_000);
      expect(after).toBeLessThan(6_000);
    }
  });

  it('a peer that calls destroy() while rank 0 waits on it gives PeerLostError, not a hang', async () => {
    const run = await spawnRanks(2, ['graceful'], { env: TCP, deadlineMs: 20_000 });
    noHang(run);
    const e = rejected(run, 0, 'waiting', 'PeerLostError', PEER_LOST);
    expect(e.peer).toBe(1);
    expect(e.message).toMatch(/rank 1 left the communicator/);
    expect(run.exits.map((x) => x.code)).toEqual([0, 0]);
  });

  it('mismatched counts reject with CollectiveMismatchError on every rank', async () => {
    const run = await spawnRanks(3, ['mismatch', 'count'], { env: TCP, deadlineMs: 25_000 });
    noHang(run);
    for (let rank = 0; rank < 3; rank++) {
      const e = rejected(run, rank, 'mismatch', 'CollectiveMismatchError', MISMATCH);
      expect(e.message).toMatch(/rank \d+ called .* but rank \d+ called /);
    }
  });
});
