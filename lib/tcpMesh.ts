/**
 * Connects this rank to every rank on another host over TCP, two connections
 * per pair (one per channel class: collectives and point-to-point), each
 * authenticated with the job's token like the store's connections. The
 * sockets are then handed to the native engine, which owns them from there.
 *
 * Lower ranks listen, higher ranks connect. Addresses travel through the store.
 *
 * @internal
 * @module
 */
import crypto from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { BackendUnavailableError, InvalidArgumentError, TimeoutError } from './errors.js';
import type { Store } from './store.js';

const MAGIC = Buffer.from('RTCP', 'ascii');
const VERSION = 1;
const NONCE_BYTES = 32;

/** What {@link buildMesh} needs. */
export interface MeshOptions {
  rank: number;
  /** Ranks to reach over TCP. */
  peers: number[];
  /** Store view shared by the ranks of this communicator. */
  store: Store;
  token: string | undefined;
  jobId: string;
  /** Address to listen on and advertise. */
  host: string;
  timeoutMs: number;
}

/** Sockets per remote rank, index = channel class. */
export type Mesh = Map<number, [net.Socket, net.Socket]>;

/**
 * The address to listen on: the IPv4 address of RINGTREE_SOCKET_IFNAME when
 * set, else the local address of the store connection (the interface that
 * routes to the master), else loopback.
 * @throws {InvalidArgumentError} when RINGTREE_SOCKET_IFNAME names no interface with an address.
 */
export function meshHost(storeLocalAddress: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const ifname = env.RINGTREE_SOCKET_IFNAME;
  if (ifname) {
    const addrs = os.networkInterfaces()[ifname] ?? [];
    const v4 = addrs.find((a) => a.family === 'IPv4') ?? addrs[0];
    if (!v4) {
      throw new InvalidArgumentError(`RINGTREE_SOCKET_IFNAME=${ifname} names no interface with an address here`, {
        op: 'init', remedy: `Pick one of: ${Object.keys(os.networkInterfaces()).join(', ')}.`,
      });
    }
    return v4.address;
  }
  if (storeLocalAddress) return storeLocalAddress.replace(/^::ffff:/, '');
  return '127.0.0.1';
}

function proof(token: string, label: string, nonceA: Buffer, nonceC: Buffer, context: string): Buffer {
  return crypto.createHmac('sha256', token).update(label).update(nonceA).update(nonceC).update(context).digest();
}

/** Reads exactly `n` bytes from a socket (paused-mode), or rejects at the deadline / on close. */
function reader(socket: net.Socket): (n: number) => Promise<Buffer> {
  let buffered = Buffer.alloc(0);
  let waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  let failure: Error | undefined;
  const pump = () => {
    if (waiting && buffered.length >= waiting.n) {
      const out = buffered.subarray(0, waiting.n);
      buffered = buffered.subarray(waiting.n);
      const w = waiting;
      waiting = undefined;
      w.resolve(Buffer.from(out));
    }
  };
  socket.on('data', (d: Buffer) => {
    buffered = Buffer.concat([buffered, d]);
    pump();
  });
  const fail = (e: Error) => {
    failure ??= e;
    waiting?.reject(failure);
    waiting = undefined;
  };
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('connection closed')));
  return (n: number) => new Promise<Buffer>((resolve, reject) => {
    if (failure) return reject(failure);
    waiting = { n, resolve, reject };
    pump();
  });
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

interface Pending {
  sockets: Array<net.Socket | undefined>;
}

/**
 * Listens, publishes the address, connects to lower remote ranks, accepts
 * higher ones, and authenticates every connection.
 * @throws {BackendUnavailableError} on a refused connection or a failed handshake (wrong token).
 * @throws {TimeoutError} when a peer does not connect within `timeoutMs`.
 */
export async function buildMesh(o: MeshOptions): Promise<Mesh> {
  const mesh: Mesh = new Map();
  if (o.peers.length === 0) return mesh;
  const pending = new Map<number, Pending>(o.peers.map((p) => [p, { sockets: [undefined, undefined] }]));
  const expectedInbound = o.peers.filter((p) => p > o.rank).length * 2;
  const context = `${o.jobId}`;
  const tokenKey = o.token ?? '';
  const hasToken = tokenKey.length > 0;
  const all: net.Socket[] = [];

  let inbound = 0;
  let resolveInbound: () => void = () => undefined;
  let rejectInbound: (e: Error) => void = () => undefined;
  const inboundDone = new Promise<void>((res, rej) => {
    resolveInbound = res;
    rejectInbound = rej;
  });
  if (expectedInbound === 0) resolveInbound();

  const server = net.createServer({ pauseOnConnect: false }, (socket) => {
    all.push(socket);
    void (async () => {
      const read = reader(socket);
      // HELLO: magic, version, rank, class, nonce, flag(has token)
      const hello = await read(4 + 4 + 4 + 4 + NONCE_BYTES + 1);
      if (!hello.subarray(0, 4).equals(MAGIC) || hello.readUInt32BE(4) !== VERSION) throw new Error('not a ringtree peer');
      const peer = hello.readUInt32BE(8), cls = hello.readUInt32BE(12);
      const nonceC = hello.subarray(16, 16 + NONCE_BYTES);
      const peerHasToken = hello[16 + NONCE_BYTES] === 1;
      const slot = pending.get(peer);
      if (!slot || peer <= o.rank || cls > 1 || slot.sockets[cls]) throw new Error(`unexpected connection from rank ${peer}`);
      if (peerHasToken !== hasToken) throw new Error('token presence differs');
      const nonceA = crypto.randomBytes(NONCE_BYTES);
      const mine = hasToken ? proof(tokenKey, 'acceptor', nonceA, nonceC, context) : Buffer.alloc(32);
      socket.write(Buffer.concat([nonceA, mine]));
      const theirs = await read(32);
      if (hasToken && !crypto.timingSafeEqual(theirs, proof(tokenKey, 'connector', nonceA, nonceC, context))) {
        socket.write(Buffer.from([0]));
        throw new Error(`rank ${peer} failed the token challenge`);
      }
      socket.write(Buffer.from([1]));
      slot.sockets[cls] = socket;
      if (++inbound === expectedInbound) resolveInbound();
    })().catch((e: Error) => {
      socket.destroy();
      rejectInbound(new BackendUnavailableError(`a TCP peer connection to rank ${o.rank} failed: ${e.message}`, {
        op: 'init', rank: o.rank, remedy: 'Every rank needs the same RINGTREE_TOKEN and must be able to reach the others.',
      }));
    });
  });
  const timer = setTimeout(() => rejectInbound(new TimeoutError(
    `rank ${o.rank} waited ${o.timeoutMs} ms for ${expectedInbound - inbound} TCP connection(s) from higher ranks`,
    { op: 'init', rank: o.rank, timeoutMs: o.timeoutMs, remedy: 'Check that every rank started and that the hosts can reach each other (firewalls, RINGTREE_SOCKET_IFNAME).' })), o.timeoutMs);
  timer.unref();
  try {
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(0, o.host, () => res());
    });
    const port = (server.address() as net.AddressInfo).port;
    await o.store.set(`tcp/${o.rank}`, JSON.stringify({ host: o.host, port }));

    // Connect to every lower remote rank, one socket per class.
    const outbound = o.peers.filter((p) => p < o.rank).flatMap((peer) => [0, 1].map(async (cls) => {
      const addr = JSON.parse(Buffer.from(await o.store.get(`tcp/${peer}`, { timeoutMs: o.timeoutMs })).toString('utf8')) as { host: string; port: number };
      const socket = await new Promise<net.Socket>((res, rej) => {
        const s = net.connect({ host: addr.host, port: addr.port }, () => res(s));
        s.once('error', (e) => rej(new BackendUnavailableError(`rank ${o.rank} cannot connect to rank ${peer} at ${addr.host}:${addr.port}: ${e.message}`, {
          op: 'init', rank: o.rank, peer, remedy: 'Check that the hosts can reach each other (firewalls, RINGTREE_SOCKET_IFNAME).',
        })));
      });
      all.push(socket);
      const read = reader(socket);
      const nonceC = crypto.randomBytes(NONCE_BYTES);
      socket.write(Buffer.concat([MAGIC, u32(VERSION), u32(o.rank), u32(cls), nonceC, Buffer.from([hasToken ? 1 : 0])]));
      const reply = await read(NONCE_BYTES + 32);
      const nonceA = reply.subarray(0, NONCE_BYTES);
      if (hasToken && !crypto.timingSafeEqual(reply.subarray(NONCE_BYTES), proof(tokenKey, 'acceptor', nonceA, nonceC, context))) {
        throw new BackendUnavailableError(`rank ${peer} failed the token challenge of rank ${o.rank}`, {
          op: 'init', rank: o.rank, peer, remedy: 'Use the same RINGTREE_TOKEN on every rank.',
        });
      }
      socket.write(hasToken ? proof(tokenKey, 'connector', nonceA, nonceC, context) : Buffer.alloc(32));
      const ok = await read(1);
      if (ok[0] !== 1) {
        throw new BackendUnavailableError(`rank ${peer} refused rank ${o.rank}'s token`, {
          op: 'init', rank: o.rank, peer, remedy: 'Use the same RINGTREE_TOKEN on every rank.',
        });
      }
      pending.get(peer)!.sockets[cls] = socket;
    }));
    await Promise.all([...outbound, inboundDone]);
  } catch (e) {
    for (const s of all) s.destroy();
    throw e instanceof Error && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_RINGTREE') ? e
      : new BackendUnavailableError(`TCP set-up failed on rank ${o.rank}: ${(e as Error).message}`, { op: 'init', rank: o.rank });
  } finally {
    clearTimeout(timer);
    server.close();
  }
  for (const [peer, p] of pending) mesh.set(peer, [p.sockets[0]!, p.sockets[1]!]);
  return mesh;
}

/** The OS file descriptor of a connected socket (Linux; Node keeps it on the handle). */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) {
    throw new BackendUnavailableError('cannot hand a TCP connection to the engine: no file descriptor on this platform', { op: 'init' });
  }
  return fd;
}
