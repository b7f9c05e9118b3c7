// `ringtree launch` run as a real process over real ranks: the environment
// each rank sees, output prefixing, teardown timing, restarts, /dev/shm cleanup.
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { usableCores } from '../lib/system.js';
import { buildCli, fixture, runCli } from './fixtures/launch/cli.js';

beforeAll(() => buildCli(), 120_000);

interface RankEnv {
  RANK: string; WORLD_SIZE: string; LOCAL_RANK: string; LOCAL_WORLD_SIZE: string;
  GROUP_RANK: string; GROUP_WORLD_SIZE: string; MASTER_ADDR: string; MASTER_PORT: string;
  RINGTREE_TOKEN: string; RINGTREE_JOB_ID: string; RINGTREE_RESTART_COUNT: string;
  OMP_NUM_THREADS: string; OPENBLAS_NUM_THREADS: string; args: string[];
}

function rankEnvs(stdout: string): RankEnv[] {
  const envs = stdout.split('\n')
    .map((line) => /^\[rank (\d+)\] ENV (.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => {
      const env = JSON.parse(m[2]!) as RankEnv;
      expect(env.RANK).toBe(m[1]); // the prefix names the rank that printed the line
      return env;
    });
  return envs.sort((a, b) => Number(a.RANK) - Number(b.RANK));
}

/** The env without the variables the user sets or that the launcher must not set. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of ['OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'RINGTREE_TOKEN', 'MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE']) delete env[key];
  return { ...env, ...extra };
}

describe('ringtree launch: environment', () => {
  it('gives each rank the torchrun variables, one token and job id, and passes script arguments through', async () => {
    const run = await runCli(['launch', '--nproc', '3', fixture('printEnv.mjs'), '--lr', '0.1', 'x'], { env: cleanEnv() });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const envs = rankEnvs(run.stdout);
    expect(envs.map((e) => e.RANK)).toEqual(['0', '1', '2']);
    const threads = String(Math.max(1, Math.floor(usableCores() / 3)));
    for (const [i, env] of envs.entries()) {
      expect(env).toMatchObject({
        WORLD_SIZE: '3', LOCAL_RANK: String(i), LOCAL_WORLD_SIZE: '3', GROUP_RANK: '0', GROUP_WORLD_SIZE: '1',
        MASTER_ADDR: '127.0.0.1', RINGTREE_RESTART_COUNT: '0', OMP_NUM_THREADS: threads, OPENBLAS_NUM_THREADS: threads,
        args: ['--lr', '0.1', 'x'],
      });
      expect(env.RINGTREE_TOKEN).toMatch(/^[0-9a-f]{64}$/);
      expect(env.RINGTREE_JOB_ID).toMatch(/^[0-9a-f]{16}$/);
      expect(Number(env.MASTER_PORT)).toBeGreaterThan(0);
      // Every rank of the job shares the rendezvous facts.
      expect(env.RINGTREE_TOKEN).toBe(envs[0]!.RINGTREE_TOKEN);
      expect(env.RINGTREE_JOB_ID).toBe(envs[0]!.RINGTREE_JOB_ID);
      expect(env.MASTER_PORT).toBe(envs[0]!.MASTER_PORT);
    }
  });

  it('numbers ranks across nodes and keeps the user\'s token, address, port and thread counts', async () => {
    const run = await runCli(
      ['launch', '--nproc-per-node', '2', '--nnodes', '3', '--node-rank', '1', '--master-addr', '10.1.2.3', '--master-port', '29555', fixture('printEnv.mjs')],
      { env: cleanEnv({ RINGTREE_TOKEN: 'user-token', OMP_NUM_THREADS: '7' }) },
    );
    expect(run.code).toBe(0);
    const envs = rankEnvs(run.stdout);
    expect(envs.map((e) => [e.RANK, e.LOCAL_RANK])).toEqual([['2', '0'], ['3', '1']]);
    for (const env of envs) {
      expect(env).toMatchObject({
        WORLD_SIZE: '6', LOCAL_WORLD_SIZE: '2', GROUP_RANK: '1', GROUP_WORLD_SIZE: '3',
        MASTER_ADDR: '10.1.2.3', MASTER_PORT: '29555', RINGTREE_TOKEN: 'user-token', OMP_NUM_THREADS: '7',
        OPENBLAS_NUM_THREADS: String(Math.max(1, Math.floor(usableCores() / 2))),
      });
    }
  });

  it('defaults MASTER_PORT to 29500 for multi-node jobs', async () => {
    const run = await runCli(['launch', '--nproc', '1', '--nnodes', '2', fixture('printEnv.mjs')], { env: cleanEnv({ RINGTREE_TOKEN: 't' }) });
    expect(run.code).toBe(0);
    expect(rankEnvs(run.stdout)[0]!.MASTER_PORT).toBe('29500');
  });

  it('refuses a multi-node job without a shared RINGTREE_TOKEN', async () => {
    const run = await runCli(['launch', '--nproc', '1', '--nnodes', '2', fixture('printEnv.mjs')], { env: cleanEnv() });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/RINGTREE_TOKEN/);
    expect(run.stdout).toBe('');
  });

  it('executes a non-Node script directly', async () => {
    const run = await runCli(['launch', '--nproc', '2', fixture('printEnv.sh'), 'a', 'b']);
    expect(run.code).toBe(0);
    const lines = run.stdout.trim().split('\n').sort();
    expect(lines).toEqual(['[rank 0] SH rank=0 world=2 args=a b', '[rank 1] SH rank=1 world=2 args=a b']);
  });
});

describe('ringtree launch: output', () => {
  it('prefixes every whole line once with its rank and terminates a partial last line', async () => {
    const run = await runCli(['launch', '--nproc', '2', fixture('output.mjs')]);
    expect(run.code).toBe(0);
    expect(run.stdout.endsWith('\n')).toBe(true);
    const out = run.stdout.trimEnd().split('\n');
    const err = run.stderr.trimEnd().split('\n');
    for (const rank of [0, 1]) {
      const mine = out.filter((l) => l.startsWith(`[rank ${rank}] `));
      expect(mine).toEqual([
        `[rank ${rank}] out one from ${rank}`,
        `[rank ${rank}] out two continued from ${rank}`,
        `[rank ${rank}] partial tail from ${rank}`,
      ]);
      expect(err.filter((l) => l.startsWith(`[rank ${rank}] `))).toEqual([`[rank ${rank}] err line from ${rank}`]);
    }
    expect(out).toHaveLength(6);
    expect(err).toHaveLength(2);
  });
});

describe('ringtree launch: failures', () => {
  it('waits the grace period after a failure before SIGTERM, then names the failed rank and its exit code', async () => {
    const graceMs = 1500;
    const run = await runCli(['launch', '--nproc', '2', '--grace-ms', String(graceMs), fixture('grace.mjs')]);
    expect(run.code).toBe(3);
    const failedAt = Number(/\[rank 0\] failing at (\d+)/.exec(run.stdout)?.[1]);
    const termAt = Number(/\[rank 1\] survivor saw SIGTERM at (\d+)/.exec(run.stdout)?.[1]);
    expect(failedAt).toBeGreaterThan(0);
    expect(termAt).toBeGreaterThan(0);
    // The launcher learns of the exit a little after rank 0 printed: never earlier.
    expect(termAt - failedAt).toBeGreaterThanOrEqual(graceMs - 20);
    expect(termAt - failedAt).toBeLessThan(graceMs + 3000);
    const summary = run.stderr.split('\n').filter((l) => l.startsWith('ringtree launch: rank'));
    expect(summary).toHaveLength(1); // the survivor exited 0 after SIGTERM: not a failure
    expect(summary[0]).toMatch(/^ringtree launch: rank 0 \(local rank 0, pid \d+\) failed \(first failure\): exit code 3$/);
  });

  it('escalates to SIGKILL for a rank that ignores SIGTERM', async () => {
    const run = await runCli(['launch', '--nproc', '3', '--grace-ms', '300', fixture('grace.mjs')], { timeoutMs: 20_000 });
    expect(run.code).toBe(3);
    expect(run.stdout).toMatch(/\[rank 2\] stubborn ignores SIGTERM/);
    expect(run.stderr).toMatch(/rank 2 \(local rank 2, pid \d+\) failed: signal SIGKILL \(sent by the launcher\)/);
    expect(run.stderr).toMatch(/rank 0 \(local rank 0, pid \d+\) failed \(first failure\): exit code 3/);
  });

  it('exits with the failed rank\'s code and one summary line per failed rank', async () => {
    const run = await runCli(['launch', '--nproc', '3', '--grace-ms', '2000', fixture('exitCode.mjs'), '5', '1']);
    expect(run.code).toBe(5);
    const summary = run.stderr.split('\n').filter((l) => l.startsWith('ringtree launch: rank'));
    expect(summary).toEqual([expect.stringMatching(/^ringtree launch: rank 1 \(local rank 1, pid \d+\) failed \(first failure\): exit code 5$/)]);
  });

  it('reports a script that cannot be started', async () => {
    const run = await runCli(['launch', '--nproc', '2', '--grace-ms', '100', fixture('does-not-exist')]);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/rank 0 .*could not start .*ENOENT/);
  });

  it('restarts the whole group with a new job id until it succeeds', async () => {
    const run = await runCli(['launch', '--nproc', '2', '--max-restarts', '2', '--grace-ms', '2000', fixture('failFirstRun.mjs')]);
    expect(run.code).toBe(0);
    const attempts = [...run.stdout.matchAll(/\[rank (\d)\] attempt (\d) job ([0-9a-f]+)/g)].map((m) => ({ rank: m[1], attempt: m[2], job: m[3] }));
    expect(attempts.filter((a) => a.attempt === '0')).toHaveLength(2);
    expect(attempts.filter((a) => a.attempt === '1')).toHaveLength(2);
    expect(attempts.filter((a) => a.attempt === '2')).toHaveLength(0);
    const jobs = new Set(attempts.map((a) => `${a.attempt}:${a.job}`));
    expect(jobs.size).toBe(2);
    expect(run.stderr).toMatch(/restarting the group \(restart 1 of 2\)/);
  });

  it('gives up after --max-restarts and exits non-zero', async () => {
    const run = await runCli(['launch', '--nproc', '1', '--max-restarts', '0', fixture('failFirstRun.mjs')]);
    expect(run.code).toBe(7);
    expect(run.stderr).toMatch(/rank 0 .*exit code 7/);
  });

  it('forwards SIGINT to every rank and exits 130', async () => {
    let readyCount = 0;
    let sent = false;
    const run = await runCli(['launch', '--nproc', '2', fixture('waitForSignal.mjs')], {
      timeoutMs: 20_000,
      onSpawn: (child) => child.stdout!.on('data', (chunk: Buffer) => {
        readyCount += (chunk.toString().match(/ready/g) ?? []).length;
        // Exactly one SIGINT: a second one makes the launcher exit at once
        // (as a second Ctrl-C should), which would cut the ranks' output.
        if (readyCount === 2 && !sent) {
          sent = true;
          child.kill('SIGINT');
        }
      }),
    });
    expect(run.code).toBe(130);
    expect(run.stdout).toMatch(/\[rank 0\] got SIGINT/);
    expect(run.stdout).toMatch(/\[rank 1\] got SIGINT/);
  });
});

describe('ringtree launch: cleanup and usage', () => {
  it('removes /dev/shm/ringtree-<job>-* that ranks left behind', async () => {
    const run = await runCli(['launch', '--nproc', '2', fixture('shmLeak.mjs')]);
    expect(run.code).toBe(0);
    const files = [...run.stdout.matchAll(/SHM (\S+)/g)].map((m) => m[1]!);
    expect(files).toHaveLength(2);
    for (const file of files) expect(existsSync(file)).toBe(false);
  });

  it('rejects an unknown flag with exit code 2, naming it', async () => {
    const run = await runCli(['launch', '--nproc', '2', '--frobnicate', fixture('printEnv.mjs')]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unknown option '--frobnicate'/);
  });

  it('requires --nproc and a script', async () => {
    expect((await runCli(['launch', fixture('printEnv.mjs')])).code).toBe(2);
    const noScript = await runCli(['launch', '--nproc', '2']);
    expect(noScript.code).toBe(2);
    expect(noScript.stderr).toMatch(/missing the script/);
  });
});
