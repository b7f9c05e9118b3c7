/**
 * The process launcher behind `ringtree launch` (torchrun-style): starts one
 * process per local rank with the rendezvous environment, prefixes their
 * output with the rank, tears the whole group down when one rank fails, can
 * restart the group, and leaves nothing behind in /dev/shm.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { InvalidArgumentError } from './errors.js';
import { findFreePort, usableCores } from './system.js';

/** Options of {@link launch}. Only `script` and `nproc` are required. */
export interface LaunchOptions {
  /** The program each rank runs: a `.js`/`.mjs`/`.cjs` file runs under this Node; anything else is executed directly (found on PATH if not a path). */
  script: string;
  /** Arguments passed to the script. Default none. */
  args?: string[];
  /** Processes on this node (`--nproc`, `--nproc-per-node`). Integer >= 1. */
  nproc: number;
  /** Nodes in the job. Default 1. */
  nnodes?: number;
  /** This node's index, 0 ≤ nodeRank < nnodes. Default 0. */
  nodeRank?: number;
  /** Address of rank 0's host. Default `127.0.0.1`. */
  masterAddr?: string;
  /** Rendezvous port. Default: a free port picked per attempt when nnodes is 1, else 29500. */
  masterPort?: number;
  /** Restart the whole group this many times after a failure. Default 0. */
  maxRestarts?: number;
  /**
   * Milliseconds to wait after the first rank fails before SIGTERM, and again
   * after SIGTERM before SIGKILL. Default 5000.
   */
  graceMs?: number;
  /** Extra Node options (e.g. `--enable-source-maps`) for `.js` scripts. Default none. */
  nodeArgs?: string[];
  /** The environment children inherit. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** Where prefixed child stdout goes. Default `process.stdout`. */
  stdout?: Writable;
  /** Where prefixed child stderr and the launcher's own messages go. Default `process.stderr`. */
  stderr?: Writable;
  /**
   * Stops the job: the signal named by `signal.reason` (`'SIGINT'` or
   * `'SIGTERM'`, else SIGTERM) is forwarded to every rank, then SIGKILL after
   * `graceMs`. No restart follows.
   */
  signal?: AbortSignal;
}

/** How one rank ended. */
export interface RankOutcome {
  /** Global rank. */
  rank: number;
  /** Rank on this node. */
  localRank: number;
  /** Process id, or null when it never started. */
  pid: number | null;
  /** Exit code, or null when killed by a signal or never started. */
  exitCode: number | null;
  /** Signal that ended it, e.g. `'SIGKILL'`, or null. */
  signal: string | null;
  /** True when it ended after the launcher signalled it (teardown after another rank failed, or an interrupt). */
  terminatedByLauncher: boolean;
  /** Why it could not start (spawn error) or did not exit even after SIGKILL, else null. */
  error: string | null;
}

/** One attempt of the whole group. */
export interface LaunchAttempt {
  /** `RINGTREE_RESTART_COUNT` of this attempt (0 for the first). */
  restartCount: number;
  /** `RINGTREE_JOB_ID` of this attempt. */
  jobId: string;
  /** Every local rank's outcome, by local rank. */
  ranks: RankOutcome[];
  /** The rank that failed first, or null when all succeeded. */
  firstFailure: number | null;
}

/** What {@link launch} resolves with. */
export interface LaunchResult {
  /** The code the CLI exits with: 0 on success; the first failed rank's code (128 + signal number when signalled); 130/143 when interrupted. */
  exitCode: number;
  /** True when every rank of the last attempt exited 0. */
  ok: boolean;
  /** True when `options.signal` stopped the job. */
  interrupted: boolean;
  /** Every attempt, first to last. */
  attempts: LaunchAttempt[];
  /** One line per failed rank of the last attempt (the first failure first); empty on success. */
  summary: string[];
}

/** The default grace period (ms) between the first failure and SIGTERM, and between SIGTERM and SIGKILL. */
export const DEFAULT_GRACE_MS = 5000;
/** The default rendezvous port for multi-node jobs (torchrun's). */
export const DEFAULT_MULTINODE_MASTER_PORT = 29500;
/** How long to wait for a process to vanish after SIGKILL, and for its pipes to close after it exited. */
const REAP_DEADLINE_MS = 5000;
const PIPE_DRAIN_DEADLINE_MS = 2000;
/** A line longer than this is written out in pieces rather than buffered without bound. */
const MAX_LINE_BYTES = 1 << 20;

const NODE_SCRIPT = /\.(?:c|m)?js$/i;

function checkInteger(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`expected an integer in [${min}, ${max}] for \`${name}\`, got ${String(value)}`, { op: 'launch' });
  }
}

/**
 * Splits a byte stream into lines and writes each with a prefix in one
 * `write()`, so lines of different ranks never interleave mid-line.
 */
class LinePrefixer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly prefix: Buffer, private readonly out: Writable) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline < 0) break;
      this.emit(chunk.subarray(start, newline + 1));
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.pending.push(rest);
      this.pendingBytes += rest.length;
      if (this.pendingBytes >= MAX_LINE_BYTES) this.flush();
    }
  }

  /** Write out a partial last line, terminated, so the next prefix starts a line. */
  flush(): void {
    if (this.pendingBytes > 0) this.emit(Buffer.from('\n'));
  }

  private emit(tail: Buffer): void {
    const parts = [this.prefix, ...this.pending, tail];
    this.pending = [];
    this.pendingBytes = 0;
    this.out.write(Buffer.concat(parts));
  }
}

interface RunningRank {
  outcome: RankOutcome;
  child: ChildProcess | null;
  exited: Promise<void>;
  closed: Promise<void>;
  stdoutLines: LinePrefixer;
  stderrLines: LinePrefixer;
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function withDeadline(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** Signal a rank's whole process group (it leads one), falling back to the process itself. */
function killGroup(child: ChildProcess | null, signal: NodeJS.Signals): void {
  if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
}

/** Remove `/dev/shm/ringtree-<jobId>-*`: segments a crashed rank could not unlink. */
export function removeJobSegments(jobId: string, dir = '/dev/shm'): string[] {
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  const prefix = `ringtree-${jobId}-`;
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    try {
      rmSync(path.join(dir, name), { force: true, recursive: true });
      removed.push(name);
    } catch {
      // Someone else removed it, or we lack permission: nothing more to do.
    }
  }
  return removed;
}

function signalNumber(signal: string): number {
  return (osConstants.signals as Record<string, number>)[signal] ?? 0;
}

function describeOutcome(o: RankOutcome): string {
  if (o.error !== null && o.exitCode === null && o.signal === null) return o.error;
  if (o.signal !== null) return `signal ${o.signal}${o.terminatedByLauncher ? ' (sent by the launcher)' : ''}`;
  return `exit code ${o.exitCode}${o.terminatedByLauncher ? ' (after the launcher\'s signal)' : ''}`;
}

function failed(o: RankOutcome): boolean {
  return o.exitCode !== 0 || o.signal !== null || o.error !== null;
}

/** The summary lines for one attempt: the first failure first, then the others by rank. */
function summarize(attempt: LaunchAttempt): string[] {
  const bad = attempt.ranks.filter(failed);
  bad.sort((a, b) => (a.rank === attempt.firstFailure ? -1 : b.rank === attempt.firstFailure ? 1 : a.rank - b.rank));
  return bad.map((o) => {
    const first = o.rank === attempt.firstFailure ? ' (first failure)' : '';
    return `ringtree launch: rank ${o.rank} (local rank ${o.localRank}, pid ${o.pid ?? 'none'}) failed${first}: ${describeOutcome(o)}`;
  });
}

/**
 * Run `nproc` copies of `script` on this node as ranks of one job and wait
 * for them.
 *
 * Each rank gets `RANK`, `WORLD_SIZE` (nproc × nnodes), `LOCAL_RANK`,
 * `LOCAL_WORLD_SIZE`, `GROUP_RANK`, `GROUP_WORLD_SIZE`, `MASTER_ADDR`,
 * `MASTER_PORT`, `RINGTREE_TOKEN` (inherited if set, else 32 random bytes in
 * hex made once per job; every node of a multi-node job must be given the
 * same one), `RINGTREE_JOB_ID` (new per attempt), `RINGTREE_RESTART_COUNT`, and
 * `OMP_NUM_THREADS`/`OPENBLAS_NUM_THREADS` = max(1, ⌊usable cores / nproc⌋)
 * unless already set.
 *
 * When a rank fails (non-zero exit or signal) the others get `graceMs` to
 * report their own errors and exit, then SIGTERM, then after another
 * `graceMs` SIGKILL (each rank's whole process group). After every attempt,
 * `/dev/shm/ringtree-<jobId>-*` is removed. Every wait has a deadline.
 *
 * Resolves (never rejects) once every rank is gone; see
 * {@link LaunchResult.exitCode} and {@link LaunchResult.summary}.
 *
 * Rejects with {@link InvalidArgumentError} for a bad option, or when
 * `nnodes` > 1 and `RINGTREE_TOKEN` is not set (each node would otherwise
 * make its own token and the nodes could never join).
 */
export async function launch(options: LaunchOptions): Promise<LaunchResult> {
  const nnodes = options.nnodes ?? 1;
  const nodeRank = options.nodeRank ?? 0;
  const maxRestarts = options.maxRestarts ?? 0;
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  checkInteger('nproc', options.nproc, 1, 4096);
  checkInteger('nnodes', nnodes, 1, 65536);
  checkInteger('nodeRank', nodeRank, 0, nnodes - 1);
  checkInteger('maxRestarts', maxRestarts, 0);
  checkInteger('graceMs', graceMs, 0, 3_600_000);
  if (options.masterPort !== undefined) checkInteger('masterPort', options.masterPort, 1, 65535);
  if (typeof options.script !== 'string' || options.script === '') {
    throw new InvalidArgumentError('expected a script path or command for `script`', { op: 'launch' });
  }

  const baseEnv = options.env ?? process.env;
  if (nnodes > 1 && !baseEnv.RINGTREE_TOKEN) {
    throw new InvalidArgumentError('a multi-node job needs RINGTREE_TOKEN: every node must be given the same one', {
      op: 'launch',
      remedy: 'export RINGTREE_TOKEN=$(openssl rand -hex 32) once and pass that same value to `ringtree launch` on every node',
    });
  }
  const stdout = options.stdout ?? process.stdout;
  const stderr = options.stderr ?? process.stderr;
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  const token = baseEnv.RINGTREE_TOKEN || randomBytes(32).toString('hex');
  const threads = String(Math.max(1, Math.floor(usableCores() / options.nproc)));
  const attempts: LaunchAttempt[] = [];

  for (let restartCount = 0; ; restartCount++) {
    const jobId = randomBytes(8).toString('hex');
    let masterPort = options.masterPort;
    if (masterPort === undefined) {
      masterPort = nnodes === 1 ? await findFreePort(masterAddr).catch(() => findFreePort('127.0.0.1')) : DEFAULT_MULTINODE_MASTER_PORT;
    }
    const env: NodeJS.ProcessEnv = {
      ...baseEnv,
      WORLD_SIZE: String(options.nproc * nnodes),
      LOCAL_WORLD_SIZE: String(options.nproc),
      GROUP_RANK: String(nodeRank),
      GROUP_WORLD_SIZE: String(nnodes),
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(masterPort),
      RINGTREE_TOKEN: token,
      RINGTREE_JOB_ID: jobId,
      RINGTREE_RESTART_COUNT: String(restartCount),
    };
    if (!baseEnv.OMP_NUM_THREADS) env.OMP_NUM_THREADS = threads;
    if (!baseEnv.OPENBLAS_NUM_THREADS) env.OPENBLAS_NUM_THREADS = threads;

    const attempt = await runAttempt({ options, env, nodeRank, graceMs, stdout, stderr, restartCount, jobId });
    attempts.push(attempt);
    const interrupted = options.signal?.aborted ?? false;
    const ok = attempt.firstFailure === null && !interrupted;
    if (ok || interrupted || restartCount >= maxRestarts) {
      const summary = ok ? [] : summarize(attempt);
      for (const line of summary) stderr.write(`${line}\n`);
      return { exitCode: ok ? 0 : exitCodeOf(attempt, interrupted ? options.signal?.reason : undefined), ok, interrupted, attempts, summary };
    }
    for (const line of summarize(attempt)) stderr.write(`${line}\n`);
    stderr.write(`ringtree launch: restarting the group (restart ${restartCount + 1} of ${maxRestarts})\n`);
  }
}

function exitCodeOf(attempt: LaunchAttempt, interruptReason: unknown): number {
  if (interruptReason !== undefined) {
    const name = interruptReason === 'SIGINT' || interruptReason === 'SIGTERM' ? interruptReason : 'SIGTERM';
    return 128 + signalNumber(name);
  }
  const first = attempt.ranks.find((o) => o.rank === attempt.firstFailure);
  if (first?.exitCode) return first.exitCode;
  if (first?.signal) return 128 + signalNumber(first.signal);
  return 1;
}

interface AttemptContext {
  options: LaunchOptions;
  env: NodeJS.ProcessEnv;
  nodeRank: number;
  graceMs: number;
  stdout: Writable;
  stderr: Writable;
  restartCount: number;
  jobId: string;
}

/** Children still running, so a launcher that exits abruptly kills them on its way out. */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of liveChildren) killGroup(child, 'SIGKILL');
  });
}

async function runAttempt(ctx: AttemptContext): Promise<LaunchAttempt> {
  const { options, env, nodeRank, graceMs } = ctx;
  const nproc = options.nproc;
  const command = NODE_SCRIPT.test(options.script) ? process.execPath : options.script;
  const commandArgs = NODE_SCRIPT.test(options.script)
    ? [...(options.nodeArgs ?? []), options.script, ...(options.args ?? [])]
    : [...(options.args ?? [])];
  installExitHook();

  let firstFailure: number | null = null;
  let tearingDown = false;
  let notifyFailure: () => void = () => {};
  const failureSeen = new Promise<void>((resolve) => (notifyFailure = resolve));

  const ranks: RunningRank[] = [];
  for (let localRank = 0; localRank < nproc; localRank++) {
    const rank = nodeRank * nproc + localRank;
    const outcome: RankOutcome = {
      rank, localRank, pid: null, exitCode: null, signal: null, terminatedByLauncher: false, error: null,
    };
    const prefix = Buffer.from(`[rank ${rank}] `);
    const stdoutLines = new LinePrefixer(prefix, ctx.stdout);
    const stderrLines = new LinePrefixer(prefix, ctx.stderr);
    let child: ChildProcess | null = null;
    let exited: Promise<void>;
    let closed: Promise<void>;
    const markFailed = (): void => {
      if (firstFailure === null && failed(outcome) && !outcome.terminatedByLauncher) {
        firstFailure = rank;
        notifyFailure();
      }
    };
    try {
      child = spawn(command, commandArgs, {
        env: { ...env, RANK: String(rank), LOCAL_RANK: String(localRank) },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group, so teardown reaches the rank's own children
        // too, and a terminal's Ctrl-C reaches ranks once, through us.
        detached: true,
      });
    } catch (err) {
      outcome.error = `could not start ${command}: ${(err as Error).message}`;
    }
    if (child) {
      const c = child;
      outcome.pid = c.pid ?? null;
      liveChildren.add(c);
      c.stdout!.on('data', (chunk: Buffer) => stdoutLines.push(chunk));
      c.stderr!.on('data', (chunk: Buffer) => stderrLines.push(chunk));
      exited = new Promise<void>((resolve) => {
        c.on('error', (err) => {
          // A spawn failure (ENOENT, EACCES) comes here without an 'exit'.
          if (c.pid === undefined || outcome.pid === null) {
            outcome.error = `could not start ${command}: ${err.message}`;
            liveChildren.delete(c);
            markFailed();
            resolve();
          }
        });
        c.once('exit', (code, signal) => {
          outcome.exitCode = code;
          outcome.signal = signal;
          if (tearingDown) outcome.terminatedByLauncher = true;
          liveChildren.delete(c);
          markFailed();
          resolve();
        });
      });
      closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    } else {
      exited = Promise.resolve();
      closed = Promise.resolve();
      markFailed();
    }
    ranks.push({ outcome, child, exited, closed, stdoutLines, stderrLines });
  }

  const allExited = Promise.all(ranks.map((r) => r.exited)).then(() => undefined);
  const interrupt = new Promise<void>((resolve) => {
    if (options.signal?.aborted) return resolve();
    options.signal?.addEventListener('abort', () => resolve(), { once: true });
  });

  await Promise.race([allExited, failureSeen, interrupt]);

  const stillRunning = (): RunningRank[] => ranks.filter((r) => r.child && r.child.exitCode === null && r.child.signalCode === null && r.outcome.error === null);

  if (options.signal?.aborted) {
    const reason = options.signal.reason;
    const forwarded: NodeJS.Signals = reason === 'SIGINT' || reason === 'SIGTERM' ? reason : 'SIGTERM';
    tearingDown = true;
    if (stillRunning().length > 0) ctx.stderr.write(`ringtree launch: interrupted: forwarding ${forwarded} to ${stillRunning().length} rank(s)\n`);
    for (const r of stillRunning()) killGroup(r.child, forwarded);
    await terminate(allExited, graceMs, ctx.stderr, stillRunning);
  } else if (firstFailure !== null && stillRunning().length > 0) {
    const failedOutcome = ranks.find((r) => r.outcome.rank === firstFailure)!.outcome;
    ctx.stderr.write(`ringtree launch: first failure on rank ${firstFailure} (${describeOutcome(failedOutcome)}); ` +
      `giving the other ranks up to ${graceMs} ms to exit\n`);
    // Survivors may be about to report their own typed errors (PeerLostError):
    // give them the grace period before any signal.
    const abortDuringGrace = new AbortController();
    options.signal?.addEventListener('abort', () => abortDuringGrace.abort(), { once: true });
    await Promise.race([allExited, delay(graceMs, abortDuringGrace.signal)]);
    abortDuringGrace.abort();
    const forwarded: NodeJS.Signals = options.signal?.aborted && options.signal.reason === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
    const left = stillRunning();
    if (left.length > 0) {
      tearingDown = true;
      ctx.stderr.write(`ringtree launch: sending ${forwarded} to rank(s) ${left.map((r) => r.outcome.rank).join(', ')}\n`);
      for (const r of left) killGroup(r.child, forwarded);
      await terminate(allExited, graceMs, ctx.stderr, stillRunning);
    }
  } else {
    await allExited;
  }

  // Flush output: wait (bounded) for each rank's pipes to close. A grandchild
  // holding them open must not hang the launcher.
  for (const r of ranks) {
    if (!(await withDeadline(r.closed, PIPE_DRAIN_DEADLINE_MS))) {
      r.child?.stdout?.destroy();
      r.child?.stderr?.destroy();
    }
    r.stdoutLines.flush();
    r.stderrLines.flush();
  }
  removeJobSegments(ctx.jobId);
  return { restartCount: ctx.restartCount, jobId: ctx.jobId, ranks: ranks.map((r) => r.outcome), firstFailure };
}

/** After the first signal: wait `graceMs`, SIGKILL what is left, wait (bounded) for it to vanish. */
async function terminate(
  allExited: Promise<void>,
  graceMs: number,
  stderr: Writable,
  stillRunning: () => RunningRank[],
): Promise<void> {
  if (await withDeadline(allExited, graceMs)) return;
  const left = stillRunning();
  if (left.length > 0) {
    stderr.write(`ringtree launch: sending SIGKILL to rank(s) ${left.map((r) => r.outcome.rank).join(', ')}\n`);
    for (const r of left) killGroup(r.child, 'SIGKILL');
  }
  if (await withDeadline(allExited, REAP_DEADLINE_MS)) return;
  for (const r of stillRunning()) {
    r.outcome.error = `did not exit within ${REAP_DEADLINE_MS} ms of SIGKILL (stuck in the kernel?)`;
  }
}
