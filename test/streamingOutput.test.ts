import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

beforeAll(() => {
  execFileSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], { cwd: root });
}, 120_000);

describe('large out-of-place results, in-place broadcasts and all-gathers (streaming stores)', () => {
  for (const n of [2, 3]) {
    it(`are exact and stay inside the output view at ${n} ranks`, () => {
      const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', String(n),
        path.join(root, 'test', 'workers', 'streaming-output.mjs')], { encoding: 'utf8', timeout: 120_000 });
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(run.stdout.match(/nt ok true/g)?.length, run.stdout).toBe(n);
    });
  }
});

describe('two-rank allgather with sends ahead of receives', () => {
  for (const env of [{}, { RINGTREE_SLOTS: '2', RINGTREE_SLOT_BYTES: '4096' }, { RINGTREE_SLOTS: '3', RINGTREE_TRANSPORT: 'tcp' }]) {
    it(`is exact at every chunking, in and out of place (${JSON.stringify(env)})`, () => {
      const run = spawnSync(process.execPath, [path.join(root, 'dist', 'cli.js'), 'launch', '--nproc', '2',
        path.join(root, 'test', 'workers', 'allgather-window.mjs')], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
      expect(run.status, run.stdout + run.stderr).toBe(0);
      expect(run.stdout.match(/ag ok true/g)?.length, run.stdout).toBe(2);
    });
  }
});
