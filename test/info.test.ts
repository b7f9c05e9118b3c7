// info() and `ringtree doctor`: the JSON schema every consumer relies on, and
// the host facts that must be right (usable cores, /dev/shm, the port probe).
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { info, type RingtreeInfo } from '../lib/info.js';
import { cgroupCpuQuota, parseCpuList, parseCpuMax, shmWarnings, usableCores } from '../lib/system.js';
import { buildCli, repoRoot, runCli } from './fixtures/launch/cli.js';

beforeAll(() => buildCli(), 120_000);

const isStringOrNull = (v: unknown): boolean => v === null || typeof v === 'string';

describe('ringtree doctor --json', () => {
  it('prints exactly JSON.stringify(info()) with every documented key and type, and exits 0', async () => {
    const run = await runCli(['doctor', '--json'], { timeoutMs: 30_000 });
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split('\n')).toHaveLength(1);
    const report = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(Object.keys(report).sort()).toEqual([
      'addon', 'arch', 'blas', 'build', 'cpu', 'cublas', 'driver', 'glibc', 'gpu', 'napiRuntime',
      'nccl', 'network', 'node', 'platform', 'rendezvous', 'shm', 'version', 'warnings',
    ]);
    expect(report.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(report.node).toBe(process.version);
    expect(report.napiRuntime).toBeGreaterThanOrEqual(8);
    expect(report.platform).toBe(process.platform);
    expect(report.arch).toBe(process.arch);
    expect(isStringOrNull(report.glibc)).toBe(true);
    // blas: see test/gemm.test.ts; GPU sections with the fake driver and cuBLAS: test/cuda.test.ts
    const cublas = report.cublas as Record<string, unknown>;
    expect(cublas).toMatchObject({ loaded: false, path: null, version: null, ltPath: null });
    expect(cublas.error).toMatch(/RINGTREE_CUBLAS_PATH/);
    // This machine has no CUDA driver: the driver section says so, with the fix; no GPUs, no NCCL probed.
    const driver = report.driver as Record<string, unknown>;
    expect(driver).toMatchObject({ loaded: false, path: null, cudaVersion: null });
    expect(driver.error).toMatch(/libcuda\.so\.1/);
    expect(driver.error).toMatch(/RINGTREE_CUDA_DRIVER_PATH/);
    expect(report.gpu).toBeNull();
    expect(report.nccl).toBeNull();

    const addon = report.addon as Record<string, unknown>;
    expect(addon).toEqual({ loaded: true, path: expect.stringMatching(/\.node$/), error: null });

    const build = report.build as Record<string, unknown>;
    expect(build.compiler).toMatch(/^(g\+\+|clang\+\+) \d+/);
    expect(['node-gyp', 'cmake-js']).toContain(build.buildSystem);
    expect(build.napiVersion).toBe(8);
    for (const key of ['simdCompiled', 'simdCpu']) {
      expect(Array.isArray(build[key])).toBe(true);
      expect(build[key]).toContain('baseline');
    }
    expect(build.simdCompiled).toContain(build.simdActive);
    expect(build.simdCpu).toContain(build.simdActive);
    expect(build.affinityCpus === null || (typeof build.affinityCpus === 'number' && build.affinityCpus >= 1)).toBe(true);

    const cpu = report.cpu as Record<string, unknown>;
    expect(Number.isInteger(cpu.usable)).toBe(true);
    expect(cpu.usable).toBeGreaterThanOrEqual(1);
    expect(cpu.usable).toBeLessThanOrEqual(os.cpus().length);
    expect(cpu.online).toBe(os.cpus().length);
    expect(['affinity', 'cgroup', 'os']).toContain(cpu.source);

    const shm = report.shm as Record<string, unknown>;
    expect(shm.path).toBe('/dev/shm');
    expect(shm.totalBytes).toBeGreaterThan(0);
    expect(shm.freeBytes).toBeGreaterThanOrEqual(0);
    expect(shm.freeBytes).toBeLessThanOrEqual(shm.totalBytes as number);

    const network = report.network as Array<Record<string, unknown>>;
    expect(network.some((a) => a.internal === true && a.address === '127.0.0.1')).toBe(true);
    for (const a of network) {
      expect(typeof a.name).toBe('string');
      expect(['IPv4', 'IPv6']).toContain(a.family);
      expect(typeof a.address).toBe('string');
      expect(isStringOrNull(a.cidr)).toBe(true);
      expect(typeof a.internal).toBe('boolean');
    }

    const rendezvous = report.rendezvous as Record<string, unknown>;
    expect(typeof rendezvous.masterAddr).toBe('string');
    expect(Number.isInteger(rendezvous.masterPort)).toBe(true);
    expect(['env', 'default']).toContain(rendezvous.portSource);
    expect([true, false, null]).toContain(rendezvous.portFree);
    expect(isStringOrNull(rendezvous.error)).toBe(true);

    expect(Array.isArray(report.warnings)).toBe(true);
    for (const w of report.warnings as unknown[]) expect(typeof w).toBe('string');
  });

  it('prints a human report with sections and exits 0', async () => {
    const run = await runCli(['doctor'], { timeoutMs: 30_000 });
    expect(run.code).toBe(0);
    for (const section of ['Runtime', 'Native addon', 'CPU', 'Shared memory', 'Network', 'Rendezvous']) {
      expect(run.stdout).toMatch(new RegExp(`^${section}$`, 'm'));
    }
    expect(run.stdout).toMatch(/✓ loaded from .*\.node/);
  });

  it('exits 1 with the fix when the addon cannot be loaded', async () => {
    // A copy of dist/ in a package without build/ or node_modules: nothing to load.
    const root = mkdtempSync(path.join(os.tmpdir(), 'ringtree-noaddon-'));
    try {
      cpSync(path.join(repoRoot, 'dist'), path.join(root, 'dist'), { recursive: true });
      writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'ringtree', version: '0.0.0-test', type: 'module' }));
      const env = { ...process.env };
      delete env.RINGTREE_ADDON_PATH;
      const cli = path.join(root, 'dist', 'cli.js');
      const json = spawnSync(process.execPath, [cli, 'doctor', '--json'], { env, encoding: 'utf8', timeout: 30_000 });
      expect(json.status).toBe(1);
      const report = JSON.parse(json.stdout) as RingtreeInfo;
      expect(report.addon.loaded).toBe(false);
      expect(report.addon.error).toMatch(/could not be loaded/);
      expect(report.build).toBeNull();
      expect(report.warnings.join('\n')).toMatch(/npm rebuild ringtree/);
      const human = spawnSync(process.execPath, [cli, 'doctor'], { env, encoding: 'utf8', timeout: 30_000 });
      expect(human.status).toBe(1);
      expect(human.stdout).toMatch(/✗ not loaded/);
      expect(human.stdout).toMatch(/npm rebuild ringtree/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('rejects unknown flags with exit code 2', async () => {
    const run = await runCli(['doctor', '--jsno']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/unknown option '--jsno'/);
  });

  it('prints the version and the help', async () => {
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/launch/);
    expect(help.stdout).toMatch(/doctor/);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});

describe('info()', () => {
  it('reports a taken MASTER_PORT as not free, with a warning naming it', async () => {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const report = await info({ MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) });
      expect(report.rendezvous).toEqual({ masterAddr: '127.0.0.1', masterPort: port, portSource: 'env', portFree: false, error: 'EADDRINUSE' });
      expect(report.warnings.some((w) => w.includes(`MASTER_PORT ${port}`))).toBe(true);
    } finally {
      server.close();
    }
  });

  it('does not judge a port on an address that is not this host\'s', async () => {
    const report = await info({ MASTER_ADDR: '192.0.2.123', MASTER_PORT: '29500' });
    expect(report.rendezvous.portFree).toBeNull();
  });
});

describe('system facts', () => {
  it('counts usable cores within [1, os.cpus().length]', () => {
    const cores = usableCores();
    expect(cores).toBeGreaterThanOrEqual(1);
    expect(cores).toBeLessThanOrEqual(os.cpus().length);
    const quota = cgroupCpuQuota();
    if (quota !== null) expect(cores).toBeLessThanOrEqual(Math.max(1, Math.floor(quota)));
  });

  it('parses cpu lists and cgroup v2 cpu.max', () => {
    expect(parseCpuList('0-3,8,10-11')).toBe(7);
    expect(parseCpuList('5')).toBe(1);
    expect(parseCpuList('3-1')).toBeNull();
    expect(parseCpuList('')).toBeNull();
    expect(parseCpuMax('max 100000')).toBeNull();
    expect(parseCpuMax('150000 100000')).toBe(1.5);
    expect(parseCpuMax('50000 100000\n')).toBe(0.5);
  });

  it('warns about Docker\'s 64 MiB /dev/shm with the --shm-size fix', () => {
    const warnings = shmWarnings({ path: '/dev/shm', totalBytes: 64 * 1024 ** 2, freeBytes: 64 * 1024 ** 2 });
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.join('\n')).toMatch(/--shm-size=1g/);
    expect(shmWarnings({ path: '/dev/shm', totalBytes: 8 * 1024 ** 3, freeBytes: 8 * 1024 ** 3 })).toEqual([]);
  });
});
