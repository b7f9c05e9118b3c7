/**
 * `info()`: everything ringtree knows about this host and build, as one typed
 * object. `ringtree doctor` prints it; bug reports should include
 * `ringtree doctor --json`.
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { addonCandidates, loadBinding, packageRoot, type NativeBuildInfo } from './binding.js';
import { blasInfo, type BlasInfo } from './gemm.js';
import { probeCublas, probeGpu } from './device.js';
import {
  coreInfo,
  formatBytes,
  glibcVersion,
  networkAddresses,
  probePort,
  shmInfo,
  shmWarnings,
  type CoreInfo,
  type NetworkAddress,
  type ShmInfo,
} from './system.js';

/** The native addon: whether it loaded, from where, and why not. */
export interface AddonInfo {
  /** True when the addon loaded. Without it nothing but `info()` works. */
  loaded: boolean;
  /** The `.node` file that was loaded, or null. */
  path: string | null;
  /** The loader's error (every place it tried, and the fixes) when it did not load, else null. */
  error: string | null;
}

/** How the addon was built and what SIMD it runs; `NativeBuildInfo` plus the affinity count it reports. */
export interface BuildInfo extends NativeBuildInfo {
  /** CPUs in the affinity mask as `sched_getaffinity` reports them natively, or null when the addon does not say. */
  affinityCpus: number | null;
}

/** The rendezvous endpoint `init()` would use, and whether its port can be bound here. */
export interface RendezvousInfo {
  /** `MASTER_ADDR`, or `127.0.0.1` when unset. */
  masterAddr: string;
  /** `MASTER_PORT`, or 29500 when unset. */
  masterPort: number;
  /** Where `masterPort` came from. */
  portSource: 'env' | 'default';
  /**
   * True when the port could be bound on `masterAddr` (so rank 0's store can
   * listen there); false when taken; null when `masterAddr` is not an address
   * of this host (then only rank 0's host can tell).
   */
  portFree: boolean | null;
  /** The bind error code (`EADDRINUSE`, `EADDRNOTAVAIL`...) or null. */
  error: string | null;
}

/** GPUs. */
export interface GpuSection {
  devices: Array<{ index: number; name: string; computeCapability: string; totalMemory: number; pciBusId: string }>;
}

/** The CUDA driver. */
export interface DriverSection {
  loaded: boolean;
  path: string | null;
  /** Driver API version as "major.minor" (the newest CUDA it supports), or null. */
  cudaVersion: string | null;
  /** Why it is unusable, with the fix; null when usable. */
  error: string | null;
}

/** The NCCL library. */
export interface NcclSection {
  loaded: boolean;
  path: string | null;
  version: string | null;
  /** Why it is unusable, with the fix; null when usable. */
  error: string | null;
}

/** cuBLAS and cuBLASLt as found (what device-array GEMM loads on first use). */
export interface CublasSection {
  loaded: boolean;
  path: string | null;
  version: string | null;
  ltPath: string | null;
  /** Why it was not found, with the fix; null when found. */
  error: string | null;
}

/** A later section: null until that part of ringtree reports it. */
export type FutureSection = Record<string, unknown> | null;

/** What {@link info} returns. Every key is always present. */
export interface RingtreeInfo {
  /** ringtree's version (its package.json). */
  version: string;
  /** Node.js version, e.g. `v20.20.0`. */
  node: string;
  /** Node-API version the runtime offers. */
  napiRuntime: number;
  /** `process.platform`, e.g. `linux`. */
  platform: string;
  /** `process.arch`, e.g. `x64`. */
  arch: string;
  /** glibc version at run time, or null on musl/other libcs. */
  glibc: string | null;
  /** The native addon. */
  addon: AddonInfo;
  /** Build facts from the addon, or null when it did not load. */
  build: BuildInfo | null;
  /** Cores this process may use (affinity mask and cgroup quota, not `os.cpus()`). */
  cpu: CoreInfo;
  /** `/dev/shm` size, or null when missing. */
  shm: ShmInfo | null;
  /** Every IPv4/IPv6 address of every interface, loopback included. */
  network: NetworkAddress[];
  /** The rendezvous endpoint from `MASTER_ADDR`/`MASTER_PORT`. */
  rendezvous: RendezvousInfo;
  /** The CPU BLAS GEMM uses (loaded by this call if it was not yet), or null when the addon did not load. */
  blas: BlasInfo | null;
  /** GPUs the CUDA driver reports, or null when the driver (or the addon) is unavailable. */
  gpu: GpuSection | null;
  /** The CUDA driver found at run time (`libcuda.so.1`), or null without the addon. */
  driver: DriverSection | null;
  /** NCCL found at run time, or null without the addon or without a driver. */
  nccl: NcclSection | null;
  /** cuBLAS/cuBLASLt found at run time, or null without the addon. */
  cublas: CublasSection | null;
  /** Problems worth fixing, each with its fix. Empty on a healthy host. */
  warnings: string[];
}

/** The default rendezvous port (torchrun's). */
export const DEFAULT_MASTER_PORT = 29500;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The loaded `.node` file: the addon's entry in the CommonJS module cache. */
function loadedAddonPath(): string | null {
  const cache = createRequire(import.meta.url).cache;
  const candidates = addonCandidates();
  for (const file of candidates) if (cache[file]) return file;
  for (const file of Object.keys(cache)) {
    if (file.endsWith('.node') && file.startsWith(packageRoot + path.sep)) return file;
  }
  return null;
}

function addonSection(): { addon: AddonInfo; build: BuildInfo | null } {
  try {
    const binding = loadBinding();
    const native = binding.buildInfo() as NativeBuildInfo & { affinityCpus?: number };
    const affinity = typeof native.affinityCpus === 'number' && native.affinityCpus > 0 ? native.affinityCpus : null;
    return {
      addon: { loaded: true, path: loadedAddonPath(), error: null },
      build: { ...native, affinityCpus: affinity },
    };
  } catch (err) {
    return { addon: { loaded: false, path: null, error: (err as Error).message }, build: null };
  }
}

async function rendezvousSection(env: NodeJS.ProcessEnv): Promise<RendezvousInfo> {
  const masterAddr = env.MASTER_ADDR || '127.0.0.1';
  const fromEnv = env.MASTER_PORT !== undefined && env.MASTER_PORT !== '';
  const masterPort = fromEnv ? Number(env.MASTER_PORT) : DEFAULT_MASTER_PORT;
  const portSource = fromEnv ? 'env' : 'default';
  if (!Number.isInteger(masterPort) || masterPort < 1 || masterPort > 65535) {
    return { masterAddr, masterPort, portSource, portFree: false, error: 'EINVAL' };
  }
  const probe = await probePort(masterAddr, masterPort);
  if (probe.error === 'EADDRNOTAVAIL' || probe.error === 'ENOTFOUND' || probe.error === 'EAI_AGAIN') {
    return { masterAddr, masterPort, portSource, portFree: null, error: probe.error };
  }
  return { masterAddr, masterPort, portSource, portFree: probe.free, error: probe.error };
}

function collectWarnings(result: Omit<RingtreeInfo, 'warnings'>): string[] {
  const warnings: string[] = [];
  if (!result.addon.loaded) {
    warnings.push('The native addon did not load: run `npm rebuild ringtree` (needs python3, make and g++ >= 10), or set RINGTREE_ADDON_PATH to a ringtree.node you built.');
  }
  if (result.platform !== 'linux') {
    warnings.push(`ringtree supports Linux only (this is ${result.platform}): run it on Linux or in a Linux container.`);
  }
  warnings.push(...shmWarnings(result.shm));
  const localRanks = Number(process.env.LOCAL_WORLD_SIZE ?? 0);
  const gpus = result.gpu?.devices.length ?? 0;
  if (gpus > 0 && localRanks > gpus) {
    warnings.push(`${localRanks} local ranks share ${gpus} GPU${gpus === 1 ? '' : 's'}: NCCL refuses two ranks on one GPU (before NCCL 2.30's NCCL_MULTI_RANK_GPU_ENABLE=1). Launch at most ${gpus} rank${gpus === 1 ? '' : 's'} per host for device arrays (ringtree launch --nproc ${gpus}).`);
  }
  if (result.cpu.usable === 1) {
    warnings.push('Only 1 usable core: ranks will time-share it and never spin-wait; collectives work but slowly. Give the process more CPUs (taskset, docker --cpus) for speed.');
  }
  const r = result.rendezvous;
  if (r.portFree === false) {
    const hint = r.error === 'EADDRINUSE'
      ? 'another process (perhaps a leftover job) is listening there'
      : `binding failed with ${r.error ?? 'an unknown error'}`;
    warnings.push(`MASTER_PORT ${r.masterPort} on ${r.masterAddr} is not free (${hint}): pick another with MASTER_PORT=<port>, or stop the old job (\`ss -ltnp 'sport = :${r.masterPort}'\` shows who holds it).`);
  } else if (r.portFree === null && r.portSource === 'env') {
    warnings.push(`MASTER_ADDR ${r.masterAddr} is not an address of this host (${r.error ?? 'unknown'}): fine on non-zero nodes, but rank 0's host must own it.`);
  }
  if (result.blas?.vendor === 'fallback' && result.blas.error !== 'RINGTREE_BLAS=fallback') {
    warnings.push('No CPU BLAS found: GEMM runs on the slow portable fallback. Install OpenBLAS (`apt-get install libopenblas0-pthread`) or set RINGTREE_BLAS_PATH to a library exporting cblas_sgemm.');
  }
  if (!result.network.some((a) => !a.internal)) {
    warnings.push('No non-loopback network interface: multi-node jobs cannot reach this host (single-host jobs are fine).');
  }
  return warnings;
}

/**
 * Describe this host and build: versions, the addon and how it was built,
 * usable cores, `/dev/shm`, network interfaces, the rendezvous port.
 * Never throws: a missing addon is reported in `addon.error` and `warnings`.
 *
 * Takes about as long as binding one TCP port (at most 2 s).
 *
 * @param env where `MASTER_ADDR`/`MASTER_PORT` are read (default `process.env`).
 */
export async function info(env: NodeJS.ProcessEnv = process.env): Promise<RingtreeInfo> {
  const { addon, build } = addonSection();
  const partial: Omit<RingtreeInfo, 'warnings'> = {
    version: packageVersion(),
    node: process.version,
    napiRuntime: Number(process.versions.napi ?? 0),
    platform: process.platform,
    arch: process.arch,
    glibc: glibcVersion(),
    addon,
    build,
    cpu: coreInfo(),
    shm: shmInfo(),
    network: networkAddresses(),
    rendezvous: await rendezvousSection(env),
    blas: addon.loaded ? blasInfo() : null,
    ...gpuSections(addon.loaded),
    cublas: addon.loaded ? cublasSection() : null,
  };
  return { ...partial, warnings: collectWarnings(partial) };
}

const OK = '✓';
const BAD = '✗';
const NOTE = '·';

function cublasSection(): CublasSection | null {
  try {
    const p = probeCublas();
    if (!p) return null;
    return {
      loaded: p.loaded, path: p.path, version: p.version, ltPath: p.ltPath,
      error: p.loaded ? null
        : `cuBLAS (libcublas.so.13/.12) was not found (tried ${p.attempts.length} places): install the nvidia-cublas-cu12 wheel or the CUDA toolkit's libraries, or set RINGTREE_CUBLAS_PATH`,
    };
  } catch (e) {
    return { loaded: false, path: null, version: null, ltPath: null, error: (e as Error).message };
  }
}

function gpuSections(addonLoaded: boolean): { gpu: GpuSection | null; driver: DriverSection | null; nccl: NcclSection | null } {
  if (!addonLoaded) return { gpu: null, driver: null, nccl: null };
  try {
    const probe = probeGpu();
    const info = probe.info;
    const v = info?.driver.version ?? 0;
    const driver: DriverSection = {
      loaded: info?.driver.loaded ?? false,
      path: info?.driver.path ?? null,
      cudaVersion: v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : null,
      error: probe.driverError,
    };
    if (!driver.loaded || probe.driverError) return { gpu: null, driver, nccl: null };
    const nccl: NcclSection = {
      loaded: info?.nccl.loaded ?? false,
      path: info?.nccl.path ?? null,
      version: info?.nccl.version ?? null,
      error: probe.ncclError,
    };
    return { gpu: { devices: info?.devices ?? [] }, driver, nccl };
  } catch (e) {
    return { gpu: null, driver: { loaded: false, path: null, cudaVersion: null, error: (e as Error).message }, nccl: null };
  }
}

/**
 * Render {@link RingtreeInfo} as the human report `ringtree doctor` prints:
 * one section per subsystem, a ✓/✗ line per fact, and a closing list of the
 * problems found, each with its fix.
 */
export function formatInfoReport(i: RingtreeInfo): string {
  const lines: string[] = [`ringtree doctor: ringtree ${i.version}`, ''];
  const section = (title: string, rows: string[]): void => {
    lines.push(title, ...rows.map((row) => `  ${row}`), '');
  };

  section('Runtime', [
    `${i.platform === 'linux' ? OK : BAD} Node ${i.node} (Node-API ${i.napiRuntime}) on ${i.platform}/${i.arch}, glibc ${i.glibc ?? 'not found (musl?)'}`,
  ]);

  if (i.addon.loaded) {
    const rows = [`${OK} loaded from ${i.addon.path ?? '(path unknown)'}`];
    if (i.build) {
      rows.push(`${OK} built with ${i.build.compiler} via ${i.build.buildSystem}, Node-API ${i.build.napiVersion}`);
      rows.push(`${OK} SIMD: compiled [${i.build.simdCompiled.join(', ')}], CPU offers [${i.build.simdCpu.join(', ')}], active ${i.build.simdActive}`);
      const k = i.build.kernels;
      if (k) {
        rows.push(k.embedded
          ? `${OK} CUDA kernels embedded (${k.architectures}, nvcc ${k.nvcc})`
          : `${BAD} no CUDA kernels (built without nvcc: ${k.reason}); compressed DDP and 8-byte fills on device arrays are unavailable, everything else works. Fix: rebuild with nvcc (npm rebuild ringtree)`);
      }
    }
    section('Native addon', rows);
  } else {
    section('Native addon', [`${BAD} not loaded`, ...(i.addon.error ?? '').split('\n').map((l) => `    ${l}`)]);
  }

  const quota = i.cpu.cgroupQuota === null ? 'none' : `${Number(i.cpu.cgroupQuota.toFixed(2))} cores`;
  section('CPU', [
    `${i.cpu.usable > 1 ? OK : BAD} ${i.cpu.usable} usable core${i.cpu.usable === 1 ? '' : 's'} (affinity mask ${i.cpu.affinity ?? 'unknown'}, cgroup quota ${quota}, ${i.cpu.online} online; limited by ${i.cpu.source})`,
  ]);

  const shmProblems = shmWarnings(i.shm).length > 0;
  section('Shared memory', [
    i.shm === null
      ? `${BAD} /dev/shm missing`
      : `${shmProblems ? BAD : OK} ${i.shm.path}: ${formatBytes(i.shm.totalBytes)} total, ${formatBytes(i.shm.freeBytes)} free`,
  ]);

  section('Network', i.network.length === 0
    ? [`${BAD} no interfaces`]
    : i.network.map((a) => `${a.internal ? NOTE : OK} ${a.name} ${a.family} ${a.cidr ?? a.address}${a.internal ? ' (loopback)' : ''}`));

  const r = i.rendezvous;
  const where = `MASTER_PORT ${r.masterPort} (${r.portSource === 'env' ? 'from env' : 'default'}) on MASTER_ADDR ${r.masterAddr}`;
  section('Rendezvous', [
    r.portFree === true ? `${OK} ${where}: free`
      : r.portFree === false ? `${BAD} ${where}: not free (${r.error ?? 'unknown'})`
        : `${NOTE} ${where}: not an address of this host, not checked (${r.error ?? 'unknown'})`,
  ]);

  const b = i.blas;
  section('BLAS (CPU GEMM)', [
    b === null ? `${BAD} not checked (no addon)`
      : b.vendor === 'fallback' ? `${b.error === 'RINGTREE_BLAS=fallback' ? NOTE : BAD} portable fallback (${b.error ?? 'forced'})`
        : `${OK} ${b.vendor} ${b.library}, ${b.threads} thread${b.threads === 1 ? '' : 's'}${b.config ? `: ${b.config}` : ''}`,
  ]);

  const firstLine = (t: string | null) => (t ?? '').split('\n')[0]!.replace(/\. Tried:$/, '').replace(/ Tried:$/, '');
  section('GPU, driver, NCCL, cuBLAS', [
    i.driver === null ? `${NOTE} not checked (no addon)`
      : i.driver.loaded && !i.driver.error
        ? `${OK} CUDA driver ${i.driver.path ?? ''} (supports CUDA ${i.driver.cudaVersion ?? '?'})`
        : `${NOTE} no usable CUDA driver: GPU collectives are unavailable, the CPU engine works (${firstLine(i.driver.error)})`,
    ...(i.gpu ? i.gpu.devices.map((d) => `${OK} GPU ${d.index}: ${d.name}, sm_${d.computeCapability.replace('.', '')}, ${formatBytes(d.totalMemory)}`) : []),
    ...(i.nccl ? [i.nccl.loaded && !i.nccl.error ? `${OK} NCCL ${i.nccl.version ?? ''} ${i.nccl.path ?? ''}` : `${BAD} NCCL not usable: ${firstLine(i.nccl.error)}`] : []),
    i.cublas === null ? `${NOTE} cuBLAS: not checked (no addon)`
      : i.cublas.loaded
        ? `${OK} cuBLAS ${i.cublas.version ?? ''} ${i.cublas.path ?? ''}${i.cublas.ltPath ? `, cuBLASLt ${i.cublas.ltPath}` : ', no cuBLASLt beside it'}`
        : `${NOTE} cuBLAS not found (only needed for GEMM on DeviceArrays)`,
  ]);

  if (i.warnings.length === 0) {
    lines.push(`${OK} No problems found.`);
  } else {
    lines.push(`Problems (${i.warnings.length}) and fixes`);
    for (const warning of i.warnings) lines.push(`  ${BAD} ${warning}`);
  }
  return `${lines.join('\n')}\n`;
}
