/**
 * Builds a communicator's native engine from its ranks' host keys: shared
 * memory within a host, authenticated TCP across hosts. Used by init() and
 * split().
 *
 * @internal
 * @module
 */
import { randomBytes } from 'node:crypto';
import type { NativeCommunicator } from './binding.js';
import { BackendUnavailableError, RingtreeError, errorFromNative } from './errors.js';
import type { Store } from './store.js';
import { buildMesh, socketFd } from './tcpMesh.js';

export function nativeError(e: unknown, op: string, rank: number): RingtreeError {
  if (e instanceof RingtreeError) return e;
  const err = e as { nativeCode?: number; message?: string; remedy?: string; peer?: number };
  if (typeof err?.nativeCode === 'number') {
    return errorFromNative({ code: err.nativeCode, message: err.message ?? String(e), remedy: err.remedy, peer: err.peer }, { op, rank });
  }
  return new BackendUnavailableError(`${op} failed: ${(e as Error)?.message ?? String(e)}`, { op, rank, cause: e });
}


/** Runs one set-up step, naming it in any error. */
export async function step<T>(what: string, rank: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof RingtreeError) {
      if (e.op && e.op.startsWith('init')) throw e;
      const Ctor = e.constructor as new (m: string, d: object) => RingtreeError;
      throw new Ctor(`init step "${what}" failed: ${e.message.split('\nRemedy:')[0]}`,
        { op: `init: ${what}`, rank, remedy: e.remedy, timeoutMs: e.timeoutMs, peer: e.peer, cause: e });
    }
    throw e;
  }
}

/** What {@link assemble} needs. @internal */
export interface AssembleOptions {
  rank: number;
  size: number;
  /** Per rank: ranks with equal keys share a host (shared memory); others talk TCP. */
  hostKeys: string[];
  store: Store;
  createNative: (rank: number, size: number, shmName: string, create: boolean, localRanks?: number[]) => NativeCommunicator;
  jobId: string;
  token: string | undefined;
  /** Address this rank listens on for TCP peers. */
  host: string;
  timeoutMs: number;
}

/**
 * Builds and starts the native engine of a communicator: one shared-memory
 * segment per host (made by the host's lowest rank, unlinked once every local
 * rank mapped it) and authenticated TCP connections to the ranks elsewhere.
 * Used by init() and split(). @internal
 */
export async function assemble(o: AssembleOptions): Promise<NativeCommunicator> {
  const myKey = o.hostKeys[o.rank]!;
  const localRanks: number[] = [];
  const remote: number[] = [];
  o.hostKeys.forEach((k, r) => (k === myKey ? localRanks : remote).push(r));
  const leader = localRanks[0]!;
  const mesh = remote.length > 0
    ? await step('connect to the ranks on other hosts', o.rank, () => buildMesh({
      rank: o.rank, peers: remote, store: o.store, token: o.token, jobId: o.jobId, host: o.host, timeoutMs: o.timeoutMs,
    }))
    : new Map();
  let native: NativeCommunicator | undefined;
  try {
    if (o.rank === leader) {
      const shmName = `/ringtree-${o.jobId}-${randomBytes(6).toString('hex')}`;
      native = o.createNative(o.rank, o.size, shmName, true, localRanks);
      if (localRanks.length > 1) await o.store.set(`shm/${leader}`, shmName);
    } else {
      const shmName = Buffer.from(await step(`wait for rank ${leader} to create this host's shared memory`, o.rank, () =>
        o.store.get(`shm/${leader}`, { timeoutMs: o.timeoutMs }))).toString('utf8');
      native = o.createNative(o.rank, o.size, shmName, false, localRanks);
    }
    for (const [peer, [s0, s1]] of mesh) {
      try {
        native.addTcpPeer(peer, socketFd(s0), socketFd(s1));
      } catch (e) {
        throw nativeError(e, 'init: TCP', o.rank);
      } finally {
        // The engine holds duplicates of the descriptors now.
        s0.destroy();
        s1.destroy();
      }
    }
    await step('wait for every rank to map shared memory and connect', o.rank, () =>
      o.store.barrier('attached', o.size, { timeoutMs: o.timeoutMs }));
    // Every local rank has the segment mapped: the name can go, so that
    // nothing is left in /dev/shm even if the whole job is SIGKILLed from here on.
    native.unlink();
    try {
      native.start();
    } catch (e) {
      throw nativeError(e, 'init', o.rank);
    }
    return native;
  } catch (e) {
    native?.destroy();
    for (const [, [s0, s1]] of mesh) {
      s0.destroy();
      s1.destroy();
    }
    throw e;
  }
}
