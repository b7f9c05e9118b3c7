import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { init } from '../lib/init.js';
import { InvalidArgumentError } from '../lib/errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
}, 120_000);

function launch(n: number, worker: string): Array<Record<string, any>> {
  const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n), path.join(root, 'test', 'workers', worker)],
    { encoding: 'utf8', timeout: 120_000 });
  expect(run.status, run.stdout + run.stderr).toBe(0);
  const rows = run.stdout.split('\n').filter((l) => l.includes('{')).map((l) => JSON.parse(l.replace(/^\[rank \d+\] /, '')));
  expect(rows).toHaveLength(n);
  return rows.sort((a, b) => a.rank - b.rank);
}

describe('split(color, key)', () => {
  it('groups by color, orders by key, runs groups at once, nests, and returns null for color -1', () => {
    const rows = launch(4, 'split.mjs');
    for (const r of rows) expect(r.error, JSON.stringify(r)).toBeUndefined();
    // key = -rank: the highest parent rank becomes rank 0 of its group.
    expect(rows.map((r) => r.sub)).toEqual([
      { rank: 1, size: 2, parents: [2, 0] },
      { rank: 1, size: 2, parents: [3, 1] },
      { rank: 0, size: 2, parents: [2, 0] },
      { rank: 0, size: 2, parents: [3, 1] },
    ]);
    // Even group: allreduce of rank*1000 + i%13 over ranks 0 and 2.
    for (const r of [rows[0]!, rows[2]!]) expect(r.x).toEqual([2000, 2000 + 2 * 12, 2000 + 2 * (300000 % 13)]);
    // Odd group: broadcast from its rank 0, parent rank 3.
    for (const r of [rows[1]!, rows[3]!]) expect(r.x).toEqual([3000, 3012, 3000 + (300000 % 13)]);
    expect(rows.map((r) => r.solo)).toEqual([null, null, { rank: 0, size: 1, parents: [2] }, { rank: 0, size: 1, parents: [3] }]);
    expect(rows[2]!.soloSum).toBe(7);
    for (const r of rows) {
      expect(r.parentSum).toBe(4);
      expect(r.badColor).toMatch(/color/);
      expect(r.afterBad).toBe(4);
    }
  });

  it('works at world size 1', async () => {
    const comm = await init({ rank: 0, worldSize: 1 });
    const sub = await comm.split(3);
    expect(sub?.size).toBe(1);
    const x = new Float32Array([2]);
    await sub!.allReduce(x, { op: 'prod' });
    expect(x[0]).toBe(2);
    expect(await comm.split(-1)).toBeNull();
    await expect(comm.split(1.5)).rejects.toBeInstanceOf(InvalidArgumentError);
    await sub!.destroy();
    await comm.destroy();
  });
});

describe('stats()', () => {
  it('shows a ring allreduce talking only to its ring neighbours, with its chunks, and p2p bytes per peer', () => {
    const n = 3;
    const rows = launch(n, 'stats.mjs');
    for (const r of rows) {
      const right = (r.rank + 1) % n, left = (r.rank + n - 1) % n;
      const ring = r.ring;
      expect(ring.count).toBe(1);
      expect(ring.algorithms).toEqual({ ring: 1, tree: 0 });
      // 3000 floats = 12000 bytes; a ring allreduce sends 2(n-1)/n of it, all to the right.
      expect(ring.bytesSent).toEqual([0, 1, 2].map((p) => (p === right ? 16000 : 0)));
      expect(ring.bytesReceived).toEqual([0, 1, 2].map((p) => (p === left ? 16000 : 0)));
      // 1000 floats per segment in 1000-byte chunks: 4 chunks x 2(n-1) steps.
      expect(ring.messagesSent).toBe(16);
      expect(r.send.bytesSent).toEqual([0, 1, 2].map((p) => (p === right ? 5000 : 0)));
      expect(r.recv.bytesReceived).toEqual([0, 1, 2].map((p) => (p === left ? 5000 : 0)));
      expect(r.send.count).toBe(1);
      expect(r.allReduceAfterReset).toBe(0);
    }
  });
});
