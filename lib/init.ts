/**
 * `init()`: rendezvous through the TCP store, shared-memory set-up, and the
 * Communicator.
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { loadBinding } from './binding.js';
import type { NativeCommunicator, NativeCommunicatorOptions } from './binding.js';
import { Communicator } from './comm.js';
import type { EngineTuning } from './comm.js';
import {
  BackendUnavailableError,
  InvalidArgumentError,
  RingtreeError,
  errorFromNative,
} from './errors.js';
import { rendezvousFromEnv } from './rendezvous.js';
import type { RendezvousOverrides } from './rendezvous.js';
import { StoreClient, StoreServer } from './store.js';
import type { Store } from './store.js';
import { usableCores } from './system.js';
import { meshHost } from './tcpMesh.js';
import { assemble, nativeError, step } from './assemble.js';
import { requireNccl } from './device.js';
import { NCCL_ALGORITHMS } from './ncclBackend.js';
import type { NcclAlgorithm } from './ncclBackend.js';

/** True when the CUDA driver and NCCL load here (never throws). */
function ncclLoadable(): boolean {
  if (process.env.RINGTREE_CUDA_DRIVER_PATH === undefined && process.env.RINGTREE_NCCL_PATH === undefined &&
    !process.env.LD_LIBRARY_PATH?.length && !hasDriverFile()) return false;
  try {
    requireNccl('init');
    return true;
  } catch {
    return false;
  }
}

/** Cheap pre-check so CPU-only hosts skip the NCCL search (which may ask python3). */
function hasDriverFile(): boolean {
  return ['/usr/lib/x86_64-linux-gnu/libcuda.so.1', '/usr/lib/aarch64-linux-gnu/libcuda.so.1', '/usr/lib64/libcuda.so.1',
    '/usr/local/nvidia/lib64/libcuda.so.1', '/usr/lib/wsl/lib/libcuda.so.1'].some((f) => existsSync(f));
}

/** Options of {@link init}. Every field overrides the matching environment variable. */
export interface InitOptions extends RendezvousOverrides {
  /**
   * `'cpu'` (default): host arrays on ringtree's CPU engine. `'nccl'` makes the
   * NCCL communicator eagerly and fails where there is no GPU or NCCL.
   */
  backend?: 'cpu' | 'nccl';
  /** CUDA device for device arrays' NCCL communicator (default `LOCAL_RANK` modulo the GPU count). */
  device?: number;
  /**
   * NCCL's allReduce algorithm, fixed when the NCCL communicator is made
   * (NCCL_ALGO, set under a lock and restored after): `'ring'`, `'tree'`, or
   * `'auto'` (default: NCCL chooses). With NCCL 2.24+ only allReduce is
   * restricted (`allreduce:<algo>`); before that `'ring'` applies to every
   * collective and `'tree'` is refused (BackendUnavailableError).
   */
  ncclAlgorithm?: NcclAlgorithm;
  /** Default deadline of every operation, ms (default 300 000; env RINGTREE_TIMEOUT_MS). */
  timeoutMs?: number;
  /** Deadline of each rendezvous step, ms (default 300 000, as torchrun's store; env RINGTREE_INIT_TIMEOUT_MS). */
  initTimeoutMs?: number;
  /** Bytes per shared-memory slot (default 262 144; env RINGTREE_SLOT_BYTES). Must match on every rank. */
  slotBytes?: number;
  /** Slots per channel (default 8; env RINGTREE_SLOTS). Must match on every rank. */
  slots?: number;
  /**
   * Bytes of each rank's outbox in the host's shared memory (default 8 388 608;
   * env RINGTREE_OUTBOX_BYTES; 0: none). Where every rank is on one host, a
   * broadcast of 64 KiB or more streams through the root's outbox; from 3
   * ranks, an all-gather block or an allreduce that fits it goes through the
   * outboxes too (README, "Transport"). The rank that makes the host's
   * segment decides; where /dev/shm has no room for them, there are none.
   */
  outboxBytes?: number;
  /** Default pipelining chunk, bytes (default = slotBytes; env RINGTREE_CHUNK_BYTES). */
  chunkBytes?: number;
  /**
   * Back large host arrays with transparent huge pages (default true; env
   * RINGTREE_HUGE_PAGES=0 or 1). Before a CPU collective on an array of 4 MiB
   * or more, the engine asks Linux to put the whole 2 MiB pages inside it on
   * huge pages (`madvise` MADV_HUGEPAGE, then MADV_COLLAPSE once: a copy of
   * the array the first time it is seen). Streams over huge pages miss the TLB
   * far less and the cross-memory paths pin 512x fewer pages: here memcpy ran
   * 1.2x and process_vm_readv 1.5-2x faster (docs/PERFORMANCE.md, "Huge pages").
   * Contents never change and nothing outside the array is touched; where the
   * kernel refuses (transparent_hugepage "never", pinned or shared memory, no
   * free huge page) the array stays as it was. {@link EngineTuning.hugePages}
   * says whether it is in effect.
   */
  hugePages?: boolean;
  /** A silent peer is lost after this many ms (default 30 000; env RINGTREE_HEARTBEAT_TIMEOUT_MS). */
  heartbeatTimeoutMs?: number;
}

interface RankRecord {
  rank: number;
  host: string;
  pid: number;
  localRank: number;
  capabilities: { nccl: boolean };
}

function envInt(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    throw new InvalidArgumentError(`${name}=${raw} must be an integer >= ${min}`, { op: 'init' });
  }
  return v;
}

function optBool(value: boolean | undefined, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new InvalidArgumentError(`\`${name}\` must be a boolean, got ${String(value)}`, { op: 'init' });
  return value;
}

function optInt(value: number | undefined, name: string, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) {
    throw new InvalidArgumentError(`\`${name}\` must be an integer >= ${min}, got ${String(value)}`, { op: 'init' });
  }
  return value;
}

/** A stable id of this host (hostname + boot id), overridable with RINGTREE_HOST_ID. */
export function hostId(env: NodeJS.ProcessEnv = process.env): string {
  if (env.RINGTREE_HOST_ID) return env.RINGTREE_HOST_ID;
  let boot = '';
  try {
    boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // Not Linux-like; the hostname alone will do.
  }
  return `${os.hostname()}/${boot}`;
}

/**
 * RINGTREE_FAULT=rank,op,seq[,stop]: crash `rank` (SIGKILL; with `stop`,
 * SIGSTOP, to be continued from outside) inside the collective numbered `seq`
 * (0 is init's closing barrier), which must be of kind `op` (tests).
 */
function parseFault(env: NodeJS.ProcessEnv, rank: number): NativeCommunicatorOptions['fault'] {
  const raw = env.RINGTREE_FAULT;
  if (!raw) return undefined;
  const [r, op, seq, how, ...rest] = raw.split(',');
  if (r === undefined || op === undefined || seq === undefined || !/^\d+$/.test(r) || !/^\d+$/.test(seq) ||
    (how !== undefined && how !== 'stop') || rest.length > 0) {
    throw new InvalidArgumentError(`RINGTREE_FAULT=${raw} must be "rank,op,seq" or "rank,op,seq,stop", e.g. "1,allReduce,3"`, { op: 'init' });
  }
  return Number(r) === rank ? { op, seq: Number(seq), ...(how === 'stop' ? { stop: true } : {}) } : undefined;
}

/**
 * Join the job and return a {@link Communicator}.
 *
 * Reads torchrun's `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`,
 * `MASTER_ADDR`, `MASTER_PORT` (or Open MPI's / Slurm's), with torchrun's
 * defaults; explicit options win. World size 1 needs no rendezvous. Rank 0
 * serves the rendezvous store on `MASTER_ADDR:MASTER_PORT` (or
 * `RINGTREE_STORE_PORT` / `MASTER_PORT + 1` under torchrun's elastic agent);
 * every rank joins it, authenticated with `RINGTREE_TOKEN` when set.
 *
 * @throws {InvalidArgumentError} bad options or environment variables.
 * @throws {BackendUnavailableError} the addon, the store or shared memory is unusable (port in use, no master, wrong token, /dev/shm full), or backend 'nccl' where there is no NCCL.
 * @throws {TimeoutError} a rendezvous step passed its deadline (names the step and address).
 */
export async function init(options: InitOptions = {}): Promise<Communicator> {
  const env = process.env;
  const rv = rendezvousFromEnv(env, options);
  const rank = rv.rank;
  if (options.ncclAlgorithm !== undefined && !NCCL_ALGORITHMS.includes(options.ncclAlgorithm)) {
    throw new InvalidArgumentError(`\`ncclAlgorithm\` must be one of ${NCCL_ALGORITHMS.map((a) => `'${a}'`).join(', ')}, got ${String(options.ncclAlgorithm)}`, { op: 'init', rank });
  }
  if (options.backend !== undefined && options.backend !== 'cpu' && options.backend !== 'nccl') {
    throw new InvalidArgumentError(`\`backend\` must be 'cpu' or 'nccl', got ${String(options.backend)}`, { op: 'init', rank });
  }
  if (options.device !== undefined && (!Number.isInteger(options.device) || options.device < 0)) {
    throw new InvalidArgumentError(`\`device\` must be a CUDA device ordinal, got ${String(options.device)}`, { op: 'init', rank });
  }
  // GPU capability (issue 5): with backend 'nccl' a missing driver/NCCL fails
  // here with the loader's message; otherwise it is only recorded and exchanged.
  if (options.backend === 'nccl') requireNccl('init');
  const ncclHere = options.backend === 'nccl' || ncclLoadable();
  void BackendUnavailableError;
  const binding = loadBinding();
  const slotBytes = optInt(options.slotBytes, 'slotBytes', envInt(env, 'RINGTREE_SLOT_BYTES', 256 * 1024, 64), 64);
  const tuning: EngineTuning = {
    slotBytes,
    slots: optInt(options.slots, 'slots', envInt(env, 'RINGTREE_SLOTS', 8, 2), 2),
    outboxBytes: optInt(options.outboxBytes, 'outboxBytes', envInt(env, 'RINGTREE_OUTBOX_BYTES', 8 << 20, 0), 0),
    chunkBytes: optInt(options.chunkBytes, 'chunkBytes', envInt(env, 'RINGTREE_CHUNK_BYTES', slotBytes, 1), 1),
    hugePages: optBool(options.hugePages, 'hugePages', envInt(env, 'RINGTREE_HUGE_PAGES', 1, 0) !== 0),
    timeoutMs: optInt(options.timeoutMs, 'timeoutMs', envInt(env, 'RINGTREE_TIMEOUT_MS', 300_000, 1), 1),
  };
  const initTimeoutMs = optInt(options.initTimeoutMs, 'initTimeoutMs', envInt(env, 'RINGTREE_INIT_TIMEOUT_MS', 300_000, 1), 1);
  const heartbeatTimeoutMs = optInt(options.heartbeatTimeoutMs, 'heartbeatTimeoutMs',
    envInt(env, 'RINGTREE_HEARTBEAT_TIMEOUT_MS', 30_000, 0), 0);
  const fault = parseFault(env, rank);
  const envJobId = env.RINGTREE_JOB_ID && /^[A-Za-z0-9_.-]{1,64}$/.test(env.RINGTREE_JOB_ID)
    ? env.RINGTREE_JOB_ID : undefined;
  // Without a launcher-given job id, rank 0 makes one and the others learn it
  // from the store, so that shm names and flight-recorder files agree.
  let jobId = envJobId ?? randomBytes(6).toString('hex');

  const createNative = (r: number, size: number, shmName: string, create: boolean, localRanks?: number[]): NativeCommunicator => {
    // Each local rank runs a collective thread and a JS thread: where they
    // outnumber the cores, a JS wake-up takes a core from the ring.
    const local = localRanks?.length ?? size, cores = usableCores();
    try {
      return new binding.Communicator({
        rank: r, size, shmName, create, slotBytes: tuning.slotBytes, slots: tuning.slots,
        outboxBytes: tuning.outboxBytes, hugePages: tuning.hugePages,
        chunkBytes: tuning.chunkBytes, spin: local <= cores, holdCompletions: 2 * local > cores, heartbeatTimeoutMs, fault,
        localRanks,
      });
    } catch (e) {
      throw nativeError(e, 'init: shared memory', r);
    }
  };
  const makeNative = (shmName: string, create: boolean): NativeCommunicator =>
    createNative(rank, rv.worldSize, shmName, create);

  if (rv.worldSize === 1) {
    const native = makeNative(`/ringtree-${jobId}-${randomBytes(6).toString('hex')}`, true);
    native.unlink();
    try {
      native.start();
    } catch (e) {
      native.destroy();
      throw nativeError(e, 'init', rank);
    }
    const comm = new Communicator({ native, rank, size: 1, tuning, jobId, createNative, initTimeoutMs, device: options.device, ncclAlgorithm: options.ncclAlgorithm });
    await comm.initBarrier(initTimeoutMs);
    if (options.backend === 'nccl') {
      try {
        await comm.ensureNccl();
      } catch (e) {
        await comm.destroy();
        throw e;
      }
    }
    return comm;
  }

  let server: StoreServer | undefined;
  let client: StoreClient | undefined;
  let native: NativeCommunicator | undefined;
  const cleanup = async () => {
    client?.close();
    await server?.close();
  };
  try {
    if (rank === 0) {
      server = await step(`serve the store on ${rv.masterAddr}:${rv.storePort}`, rank, () =>
        StoreServer.listen({ host: rv.masterAddr, port: rv.storePort, token: rv.token }));
    }
    client = await step(`connect to the store at ${rv.masterAddr}:${rv.storePort}`, rank, () =>
      StoreClient.connect({ host: rv.masterAddr, port: rv.storePort, token: rv.token, timeoutMs: initTimeoutMs, rank }));
    const store: Store = client.prefix(`ringtree/${envJobId ?? 'job'}`);
    if (rank === 0) await store.set('jobId', jobId);
    else jobId = Buffer.from(await store.get('jobId', { timeoutMs: initTimeoutMs })).toString('utf8');
    const me: RankRecord = { rank, host: hostId(env), pid: process.pid, localRank: rv.localRank, capabilities: { nccl: ncclHere } };
    await store.set(`rank/${rank}`, JSON.stringify(me));
    const records: RankRecord[] = [];
    for (let r = 0; r < rv.worldSize; r++) {
      const raw = await step(`wait for rank ${r} to join (store ${rv.masterAddr}:${rv.storePort})`, rank, () =>
        store.get(`rank/${r}`, { timeoutMs: initTimeoutMs }));
      records.push(JSON.parse(Buffer.from(raw).toString('utf8')) as RankRecord);
    }
    const transport = env.RINGTREE_TRANSPORT ?? 'auto';
    if (transport !== 'auto' && transport !== 'tcp') {
      throw new InvalidArgumentError(`RINGTREE_TRANSPORT=${transport} must be 'auto' (shared memory within a host, TCP across hosts) or 'tcp'`, { op: 'init', rank });
    }
    // With RINGTREE_TRANSPORT=tcp every rank is its own "host".
    const hostKeys = records.map((r) => (transport === 'tcp' ? `${r.host}#${r.rank}` : r.host));
    native = await assemble({
      rank, size: rv.worldSize, hostKeys, store, createNative, jobId, token: rv.token,
      host: meshHost(client.localAddress), timeoutMs: initTimeoutMs,
    });
    const comm = new Communicator({
      native, rank, size: rv.worldSize, tuning, jobId, onDestroy: cleanup, store, createNative, initTimeoutMs,
      hostKeys, token: rv.token, meshHost: meshHost(client.localAddress),
      ncclCapable: records.map((r) => r.capabilities?.nccl === true), device: options.device, ncclAlgorithm: options.ncclAlgorithm,
    });
    native = undefined;  // owned by comm from here on
    // The last step runs through shared memory, not the store: rank 0 serves
    // the store from its own event loop, so it must not return while a peer
    // may still wait for a store reply (a *Sync call right after init() would
    // block that loop and starve the peer). When this barrier completes on
    // rank 0, every rank is past its last store request.
    try {
      await comm.initBarrier(initTimeoutMs);
      if (options.backend === 'nccl') await comm.ensureNccl();
    } catch (e) {
      await comm.destroy();
      throw e;
    }
    return comm;
  } catch (e) {
    native?.destroy();
    await cleanup().catch(() => undefined);
    throw e;
  }
}

