#!/usr/bin/env node
// Peer-death detection latency on one host: rank 1 SIGKILLs itself while
// rank 0 waits in an allreduce; rank 0 reports the time from the kill (rank 1
// writes its timestamp to a file just before dying) to the PeerLostError.
// Repeats --trials times (one launch each) and prints the median.
//   node bench/peer-death.mjs [--trials 5]
// Target: < 2 s (DESIGN.md). The watchdog polls pidfds, so expect ~100 ms or less.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({ options: { trials: { type: 'string', default: '5' } } });

if (process.env.RINGTREE_BENCH_ROLE === 'rank') {
  const { init } = await import('../dist/index.js');
  const comm = await init();
  const dir = process.env.RINGTREE_BENCH_DIR;
  await comm.barrier();
  if (comm.rank === 1) {
    writeFileSync(path.join(dir, 'killed-at'), String(Date.now()));
    process.kill(process.pid, 'SIGKILL');
  }
  try {
    await comm.allReduce(new Float32Array(1024), { timeoutMs: 60_000 });
    console.log(JSON.stringify({ error: 'allreduce completed without its peer' }));
  } catch (e) {
    const now = Date.now();
    const killedAt = Number(readFileSync(path.join(dir, 'killed-at'), 'utf8'));
    console.log(JSON.stringify({ name: e.name, detectMs: now - killedAt }));
  }
  process.exit(0);
}

const results = [];
for (let t = 0; t < Number(values.trials); t++) {
  const dir = mkdtempSync(path.join(tmpdir(), 'rt-death-'));
  const out = await new Promise((resolve) => {
    const p = spawn(process.execPath, [path.join(here, '..', 'dist', 'cli.js'), 'launch', '--nproc', '2', '--grace-ms', '10000', fileURLToPath(import.meta.url)], {
      env: { ...process.env, RINGTREE_BENCH_ROLE: 'rank', RINGTREE_BENCH_DIR: dir },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    p.on('exit', () => resolve(text));
  });
  const line = out.split('\n').find((l) => l.includes('detectMs'));
  if (!line) {
    console.log(`trial ${t}: no result\n${out}`);
    continue;
  }
  const r = JSON.parse(line.replace(/^\[rank \d+\] /, ''));
  results.push(r.detectMs);
  console.log(`trial ${t}: ${r.name} after ${r.detectMs} ms`);
}
results.sort((a, b) => a - b);
console.log(`# peer death detection, 2 ranks, one host: median ${results[Math.floor(results.length / 2)]} ms over ${results.length} trials (target < 2000 ms)`);
