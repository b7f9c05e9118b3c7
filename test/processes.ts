// Helpers for tests that launch real ranks as child processes.
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A TCP port that was free on 127.0.0.1 a moment ago (for MASTER_PORT). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** The test runner's environment without rendezvous or ringtree variables, plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(RINGTREE_|RANK$|WORLD_SIZE$|LOCAL_RANK$|LOCAL_WORLD_SIZE$|MASTER_|OMPI_|PMI_|SLURM_|GROUP_)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** Calls `onLine` with each complete line `stream` emits (without its newline). */
export function onLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
}

/**
 * Launch `nproc` ranks of `worker` (a path from the repository root) with
 * `ringtree launch`; each prints one `RESULT {json}` line. Expects exit 0 and
 * one result per rank within 60 s; returns the results.
 */
export function launchResults<R>(worker: string, nproc: number, env: Record<string, string>): R[] {
  const p = spawnSync(process.execPath, ['dist/cli.js', 'launch', '--nproc', String(nproc), worker], {
    cwd: repoRoot, encoding: 'utf8', timeout: 60_000, env: cleanEnv(env),
  });
  const out = `${p.stdout}${p.stderr}`;
  expect(p.status, out).toBe(0);
  const results = [...out.matchAll(/RESULT (\{.*\})/g)].map((m) => JSON.parse(m[1]!) as R);
  expect(results, out).toHaveLength(nproc);
  return results;
}
