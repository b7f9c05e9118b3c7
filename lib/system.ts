/**
 * Facts about the host that decide how ringtree behaves: how many cores this
 * process may really use, how much shared memory there is, which network
 * interfaces and ports are usable. Used by `info()` / `ringtree doctor`, the
 * launcher (thread counts) and the CPU engine (whether waiting ranks may spin).
 *
 * Every function here degrades to `null` or a conservative answer; none throws.
 *
 * @module
 */
import { readFileSync, statfsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** Where the cores figure in {@link CoreInfo.usable} came from. */
export type CoreLimitSource = 'affinity' | 'cgroup' | 'os';

/** How many CPU cores this process may use, and why. */
export interface CoreInfo {
  /**
   * Cores this process can keep busy at once: the smaller of the CPU affinity
   * mask and the cgroup CPU quota (rounded down), at least 1.
   */
  usable: number;
  /** CPUs in the affinity mask (`Cpus_allowed_list` in /proc/self/status), or null if unreadable. */
  affinity: number | null;
  /** The cgroup CPU quota in cores (quota / period, may be fractional), or null when unlimited or unknown. */
  cgroupQuota: number | null;
  /** Logical CPUs the OS reports (`os.cpus().length`); not a limit on this process. */
  online: number;
  /** Which figure limited `usable`. */
  source: CoreLimitSource;
}

/** Count the CPUs in a Linux cpu list such as `0-3,8,10-11`; null when malformed. */
export function parseCpuList(list: string): number | null {
  const text = list.trim();
  if (text === '') return null;
  let count = 0;
  for (const part of text.split(',')) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!match) return null;
    const first = Number(match[1]);
    const last = match[2] === undefined ? first : Number(match[2]);
    if (last < first) return null;
    count += last - first + 1;
  }
  return count;
}

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** CPUs in this process's affinity mask (sched_getaffinity as /proc reports it), or null. */
export function affinityCpuCount(): number | null {
  const status = readText('/proc/self/status');
  if (status === null) return null;
  const match = /^Cpus_allowed_list:\s*(.+)$/m.exec(status);
  return match ? parseCpuList(match[1]!) : null;
}

/**
 * Parse cgroup v2 `cpu.max` (`"max 100000"` or `"150000 100000"`) into cores;
 * null when unlimited or malformed.
 */
export function parseCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return null;
  const q = Number(quota);
  const p = Number(period ?? '100000');
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return null;
  return q / p;
}

/** The folders above (and including) `relative` under `root`, deepest first. */
function cgroupDirectories(root: string, relative: string): string[] {
  const dirs: string[] = [];
  let current = path.posix.normalize(`/${relative}`);
  for (;;) {
    dirs.push(path.join(root, current));
    if (current === '/') break;
    current = path.posix.dirname(current);
  }
  return dirs;
}

function minOrNull(values: Array<number | null>): number | null {
  const present = values.filter((v): v is number => v !== null);
  return present.length === 0 ? null : Math.min(...present);
}

/**
 * The CPU quota the cgroup (v2 `cpu.max`, or v1 `cpu.cfs_quota_us` /
 * `cpu.cfs_period_us`) puts on this process, in cores, taking the tightest
 * limit along the path to the root; null when unlimited or unknown.
 */
export function cgroupCpuQuota(): number | null {
  const membership = readText('/proc/self/cgroup');
  if (membership === null) return null;
  const quotas: Array<number | null> = [];
  for (const line of membership.split('\n')) {
    const [, controllers, relative] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (relative === undefined || controllers === undefined) continue;
    if (controllers === '') {
      // cgroup v2 (or the unified hierarchy of a hybrid setup).
      for (const root of ['/sys/fs/cgroup', '/sys/fs/cgroup/unified']) {
        for (const dir of cgroupDirectories(root, relative)) {
          const text = readText(path.join(dir, 'cpu.max'));
          if (text !== null) quotas.push(parseCpuMax(text));
        }
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of ['cpu', 'cpu,cpuacct', 'cpuacct,cpu']) {
        for (const dir of cgroupDirectories(path.join('/sys/fs/cgroup', mount), relative)) {
          const quota = readText(path.join(dir, 'cpu.cfs_quota_us'));
          const period = readText(path.join(dir, 'cpu.cfs_period_us'));
          if (quota === null || period === null) continue;
          const q = Number(quota.trim());
          const p = Number(period.trim());
          quotas.push(q > 0 && p > 0 ? q / p : null);
        }
      }
    }
  }
  return minOrNull(quotas);
}

/**
 * Where the usable cores come from, in detail. Reads /proc and /sys on each
 * call (cheap); never throws.
 */
export function coreInfo(): CoreInfo {
  const online = Math.max(1, os.cpus().length);
  const affinity = affinityCpuCount();
  const cgroupQuota = cgroupCpuQuota();
  let usable = affinity ?? online;
  let source: CoreLimitSource = affinity !== null ? 'affinity' : 'os';
  // A fractional quota (1.5 cores) cannot keep two spinning ranks busy:
  // round down, so the CPU engine only spins when every rank has a core.
  if (cgroupQuota !== null && Math.floor(cgroupQuota) < usable) {
    usable = Math.floor(cgroupQuota);
    source = 'cgroup';
  }
  return { usable: Math.max(1, usable), affinity, cgroupQuota, online, source };
}

/**
 * Cores this process can keep busy at once: the smaller of the CPU affinity
 * mask and the cgroup CPU quota (rounded down), at least 1. Unlike
 * `os.cpus().length`, this respects `taskset`, cpusets and `docker --cpus`.
 */
export function usableCores(): number {
  return coreInfo().usable;
}

/** Size of the shared-memory filesystem. */
export interface ShmInfo {
  /** The mount examined, normally `/dev/shm`. */
  path: string;
  /** Total size in bytes. */
  totalBytes: number;
  /** Bytes free for unprivileged users. */
  freeBytes: number;
}

/** Below this total, `ringtree doctor` warns (Docker's default is 64 MiB). */
export const SHM_MIN_TOTAL_BYTES = 1024 ** 3;
/** Below this free space, `ringtree doctor` warns. */
export const SHM_MIN_FREE_BYTES = 256 * 1024 ** 2;

/** Total and free bytes of `/dev/shm` (or `dir`), or null when it does not exist. */
export function shmInfo(dir = '/dev/shm'): ShmInfo | null {
  try {
    const stats = statfsSync(dir);
    return {
      path: dir,
      totalBytes: Number(stats.blocks) * Number(stats.bsize),
      freeBytes: Number(stats.bavail) * Number(stats.bsize),
    };
  } catch {
    return null;
  }
}

/** Warnings (with the fix) about a shared-memory mount; empty when it is fine. */
export function shmWarnings(shm: ShmInfo | null): string[] {
  const fix = 'give the container more shared memory: `docker run --shm-size=1g` (or `--ipc=host`), or on Kubernetes mount an emptyDir with medium: Memory at /dev/shm';
  if (shm === null) return [`/dev/shm is missing: the CPU engine needs POSIX shared memory; ${fix}`];
  const warnings: string[] = [];
  if (shm.totalBytes < SHM_MIN_TOTAL_BYTES) {
    warnings.push(`/dev/shm is only ${formatBytes(shm.totalBytes)} (Docker's default is 64 MiB): large collectives may fail with SIGBUS; ${fix}`);
  }
  if (shm.freeBytes < SHM_MIN_FREE_BYTES) {
    warnings.push(`/dev/shm has only ${formatBytes(shm.freeBytes)} free: remove stale /dev/shm/ringtree-* segments of dead jobs, or ${fix}`);
  }
  return warnings;
}

/** `1536` → `"1.5 KiB"`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** One address of one network interface. */
export interface NetworkAddress {
  /** Interface name, e.g. `eth0`, `lo`. */
  name: string;
  family: 'IPv4' | 'IPv6';
  address: string;
  /** CIDR notation, e.g. `10.0.0.5/24`, or null. */
  cidr: string | null;
  /** True for loopback. */
  internal: boolean;
}

/** Every IPv4/IPv6 address of every interface, loopback included, external ones first. */
export function networkAddresses(): NetworkAddress[] {
  const list: NetworkAddress[] = [];
  for (const [name, addresses] of Object.entries(os.networkInterfaces())) {
    for (const a of addresses ?? []) {
      if (a.family !== 'IPv4' && a.family !== 'IPv6') continue;
      list.push({ name, family: a.family, address: a.address, cidr: a.cidr ?? null, internal: a.internal });
    }
  }
  return list.sort((a, b) => Number(a.internal) - Number(b.internal));
}

/** What trying to listen on an address and port found. */
export interface PortProbe {
  /** True when the port could be bound (and was released again). */
  free: boolean;
  /** The error code when it could not: `EADDRINUSE`, `EADDRNOTAVAIL` (not an address of this host), `EACCES`, `ETIMEDOUT`... */
  error: string | null;
}

/**
 * Try to listen on `host:port`, then close at once.
 *
 * @param timeoutMs give up after this long (default 2000 ms) and report `ETIMEDOUT`.
 */
export function probePort(host: string, port: number, timeoutMs = 2000): Promise<PortProbe> {
  return new Promise((resolve) => {
    const server = net.createServer();
    let settled = false;
    const finish = (probe: PortProbe): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      server.close(() => resolve(probe));
      if (!server.listening) resolve(probe);
    };
    const timer = setTimeout(() => finish({ free: false, error: 'ETIMEDOUT' }), timeoutMs);
    server.unref();
    server.once('error', (err: NodeJS.ErrnoException) => finish({ free: false, error: err.code ?? err.message }));
    server.listen({ host, port, exclusive: true }, () => finish({ free: true, error: null }));
  });
}

/**
 * A TCP port that was free on `host` a moment ago (the kernel's pick).
 * Racy by nature: another process may take it before ours binds.
 *
 * @throws the listen error when `host` cannot be bound at all.
 */
export function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error(`could not pick a free port on ${host}`))));
    });
  });
}

/** The glibc version the process runs on (from `process.report`), or null on musl/other libcs. */
export function glibcVersion(): string | null {
  try {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return report?.header?.glibcVersionRuntime ?? null;
  } catch {
    return null;
  }
}
