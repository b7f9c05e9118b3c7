/**
 * The rendezvous key-value store: a small TCP server (usually hosted by rank 0)
 * and a client every rank connects with. Plays the role of PyTorch's TCPStore,
 * with three differences that matter: it binds only the address it is given,
 * every connection must pass a mutual HMAC-SHA256 challenge on the job's
 * shared token, and every blocking call has a finite deadline.
 *
 * Wire format (all integers big-endian): every message is a frame
 * `u32 bodyLength | u8 opcode | u32 requestId | payload`. Byte strings inside a
 * payload are `u32 length | bytes`. The server opens with HELLO (magic, version,
 * auth flag, nonce); the client answers HELLO_REPLY (magic, version, its nonce,
 * its proof); the server answers WELCOME (its proof) or ERROR and closes.
 * Only then are operations accepted. Requests carry ids so that many can be in
 * flight on one connection; blocking gets and waits are parked server-side
 * with their own deadline, never polled.
 *
 * @module
 */
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import {
  AbortedError,
  BackendUnavailableError,
  InvalidArgumentError,
  PeerLostError,
  RingtreeError,
  TimeoutError,
} from './errors.js';

// ---------------------------------------------------------------------------
// Protocol constants

/** Protocol version spoken by this build; both ends must match exactly. */
export const STORE_PROTOCOL_VERSION = 1;
/** Largest key, in bytes of UTF-8. */
export const STORE_MAX_KEY_BYTES = 4096;
/** Default largest value, in bytes (64 MiB). */
export const STORE_DEFAULT_MAX_VALUE_BYTES = 64 * 1024 * 1024;
/** Largest number of keys one `wait` may name. */
export const STORE_MAX_WAIT_KEYS = 65536;
/** Default deadline of connect and of every request, in milliseconds (PyTorch's TCPStore default). */
export const STORE_DEFAULT_TIMEOUT_MS = 300_000;

const MAGIC = Buffer.from('RTKV', 'latin1');
const NONCE_BYTES = 32;
const HEADER_BYTES = 5; // opcode + request id, after the length prefix
/** Frames before authentication are tiny; an unauthenticated peer cannot make the server allocate. */
const HANDSHAKE_MAX_FRAME_BYTES = 1024;
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** setTimeout's ceiling; larger delays fire at once. */
const MAX_TIMER_MS = 2_147_483_647;
/** Replies buffered for one connection before the server stops reading its requests. */
const SERVER_WRITE_HIGH_WATER = 16 * 1024 * 1024;
const MAX_WAITERS_PER_CONNECTION = 100_000;
/** Extra time the client grants the server to report a blocking call's own timeout. */
const CLIENT_GRACE_MS = 2_000;

/** @internal Opcodes; exported for tests. */
export const Op = {
  HELLO: 0x01,
  HELLO_REPLY: 0x02,
  WELCOME: 0x03,
  SET: 0x10,
  GET: 0x11,
  TRY_GET: 0x12,
  ADD: 0x13,
  COMPARE_SET: 0x14,
  WAIT: 0x15,
  DELETE: 0x16,
  OK: 0x80,
  VALUE: 0x81,
  NOT_FOUND: 0x82,
  BOOL: 0x83,
  ERROR: 0x8f,
} as const;

/** @internal Error codes carried by an ERROR frame. */
export const ErrorCode = {
  TIMEOUT: 1,
  MALFORMED: 2,
  TOO_LARGE: 3,
  UNKNOWN_OP: 4,
  AUTH: 5,
  VERSION: 6,
  NOT_INTEGER: 7,
  TOO_MANY_WAITERS: 8,
  INTERNAL: 9,
} as const;

const AUTH_LABEL_CLIENT = Buffer.from('ringtree-store/1 client proof', 'latin1');
const AUTH_LABEL_SERVER = Buffer.from('ringtree-store/1 server proof', 'latin1');

const TOKEN_REMEDY = 'Give every rank and the store host the same RINGTREE_TOKEN (ringtree launch sets it for you); do not set it on some ranks only.';

/** A violation of the wire format. Never escapes this module. */
class ProtocolError extends Error {
  constructor(message: string, readonly errorCode: number = ErrorCode.MALFORMED) {
    super(message);
  }
}

/** @internal Encode one frame. */
export function encodeFrame(op: number, requestId: number, parts: readonly Uint8Array[] = []): Buffer {
  let payload = 0;
  for (const p of parts) payload += p.length;
  const frame = Buffer.allocUnsafe(4 + HEADER_BYTES + payload);
  frame.writeUInt32BE(HEADER_BYTES + payload, 0);
  frame.writeUInt8(op, 4);
  frame.writeUInt32BE(requestId >>> 0, 5);
  let off = 4 + HEADER_BYTES;
  for (const p of parts) {
    frame.set(p, off);
    off += p.length;
  }
  return frame;
}

/** @internal A length-prefixed byte string, as one or two parts. */
export function lengthPrefixed(bytes: Uint8Array): Uint8Array[] {
  return [u32(bytes.length), bytes];
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

function u8(n: number): Buffer {
  return Buffer.from([n & 0xff]);
}

/** A decoded frame; `payload` is a view into the receive buffer. */
interface Frame {
  op: number;
  requestId: number;
  payload: Buffer;
}

/**
 * Splits a byte stream into frames. Keeps the received chunks in a list and
 * joins them only once a whole frame is present, so a large frame arriving in
 * many small chunks costs one copy, not one per chunk.
 */
class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private error: ProtocolError | undefined;

  constructor(public maxFrameBytes: number) {}

  /**
   * Append a chunk; return the complete frames, and the ProtocolError that
   * ended the stream if a bad length followed them. After an error the reader
   * accepts nothing more.
   */
  push(chunk: Buffer): { frames: Frame[]; error?: ProtocolError } {
    const frames: Frame[] = [];
    if (this.error) return { frames, error: this.error };
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const length = this.peekLength();
      if (length < HEADER_BYTES) this.error = new ProtocolError(`frame length ${length} is shorter than a header`);
      else if (length > this.maxFrameBytes) {
        this.error = new ProtocolError(`frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes}`, ErrorCode.TOO_LARGE);
      }
      if (this.error) {
        this.chunks = [];
        this.buffered = 0;
        return { frames, error: this.error };
      }
      if (this.buffered < 4 + length) break;
      const body = this.take(4 + length).subarray(4);
      frames.push({ op: body[0]!, requestId: body.readUInt32BE(1), payload: body.subarray(HEADER_BYTES) });
    }
    return { frames };
  }

  private peekLength(): number {
    if (this.chunks[0]!.length < 4) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!.readUInt32BE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const want = n - off;
        if (c.length <= want) {
          c.copy(out, off);
          off += c.length;
          this.chunks.shift();
        } else {
          c.copy(out, off, 0, want);
          this.chunks[0] = c.subarray(want);
          off += want;
        }
      }
    }
    this.buffered -= n;
    return out;
  }
}

/** Bounds-checked reader over one payload. */
class Cursor {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.off);
    this.off += 8;
    return v;
  }
  raw(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  bytes(limit: number, what: string): Buffer {
    const n = this.u32();
    if (n > limit) throw new ProtocolError(`${what} of ${n} bytes exceeds the limit of ${limit}`, ErrorCode.TOO_LARGE);
    return this.raw(n);
  }
  rest(): Buffer {
    const v = this.buf.subarray(this.off);
    this.off = this.buf.length;
    return v;
  }
  end(): void {
    if (this.off !== this.buf.length) throw new ProtocolError(`${this.buf.length - this.off} trailing bytes in frame`);
  }
  private need(n: number): void {
    if (this.off + n > this.buf.length) throw new ProtocolError('frame is truncated');
  }
}

function proof(token: string, label: Buffer, serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return crypto.createHmac('sha256', token).update(label).update(serverNonce).update(clientNonce).digest();
}

function proofMatches(expected: Buffer, got: Buffer): boolean {
  return got.length === expected.length && crypto.timingSafeEqual(expected, got);
}

function tokenFrom(explicit: string | undefined): string | undefined {
  const token = explicit !== undefined ? explicit : process.env.RINGTREE_TOKEN;
  return token ? token : undefined;
}

function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '[::1]') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

function formatAddress(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

function validTimeout(ms: number | undefined, fallback: number, op: string, rank?: number): number {
  if (ms === undefined) return fallback;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0 || ms > MAX_TIMER_MS) {
    throw new InvalidArgumentError(`timeoutMs must be a finite number of milliseconds in 0..${MAX_TIMER_MS}, got ${String(ms)}`, { op, rank });
  }
  return Math.floor(ms);
}

// ---------------------------------------------------------------------------
// Server

/** Options of {@link StoreServer.listen}. */
export interface StoreServerOptions {
  /** Address to bind. Default `'127.0.0.1'`. Binding anything but loopback needs a token or `insecure`. */
  host?: string;
  /** TCP port; 0 picks an ephemeral one (read it back from {@link StoreServer.port}). */
  port: number;
  /** Shared secret every client must prove it knows. Default `process.env.RINGTREE_TOKEN`; `''` means none. */
  token?: string;
  /** Allow a non-loopback bind without a token. Default: `process.env.RINGTREE_INSECURE === '1'`. */
  insecure?: boolean;
  /** Largest value accepted, in bytes. Default 64 MiB. */
  maxValueBytes?: number;
}

interface Waiter {
  connection: ServerConnection;
  requestId: number;
  /** Keys (latin1 map keys) still missing. */
  missing: Set<string>;
  /** For a get: the key whose value is the reply. */
  getKey: string | undefined;
  timer: NodeJS.Timeout;
}

type ConnectionState = 'handshake' | 'ready' | 'closed';

class ServerConnection {
  state: ConnectionState = 'handshake';
  readonly reader = new FrameReader(HANDSHAKE_MAX_FRAME_BYTES);
  readonly serverNonce = crypto.randomBytes(NONCE_BYTES);
  readonly waiters = new Set<Waiter>();
  private handshakeTimer: NodeJS.Timeout | undefined;
  private pausedForDrain = false;
  /** Parsed frames not yet served: serving stops while replies wait to drain. */
  private backlog: Frame[] = [];
  private backlogNext = 0;
  private readError: ProtocolError | undefined;

  constructor(readonly socket: net.Socket, private readonly server: StoreServer) {
    // The owning process decides the server's lifetime, never its clients.
    socket.unref();
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => this.close());
    socket.on('close', () => this.close());
    socket.on('drain', () => {
      if (this.pausedForDrain) {
        this.pausedForDrain = false;
        socket.resume();
        this.pump();
      }
    });
    this.handshakeTimer = setTimeout(() => this.close(), HANDSHAKE_TIMEOUT_MS);
    this.handshakeTimer.unref();
    this.send(Op.HELLO, 0, [MAGIC, u16(STORE_PROTOCOL_VERSION), u8(server.token ? 1 : 0), this.serverNonce]);
  }

  send(op: number, requestId: number, parts: readonly Uint8Array[] = []): void {
    if (this.state === 'closed' || this.socket.destroyed) return;
    this.socket.write(encodeFrame(op, requestId, parts));
    // Back-pressure: a client that sends requests but does not read replies
    // stops being read from, instead of growing our memory without bound.
    if (this.socket.writableLength > SERVER_WRITE_HIGH_WATER && !this.pausedForDrain) {
      this.pausedForDrain = true;
      this.socket.pause();
    }
  }

  sendError(requestId: number, code: number, message: string): void {
    this.send(Op.ERROR, requestId, [u16(code), Buffer.from(message, 'utf8')]);
  }

  /** Reply with an error and close: the stream can no longer be trusted. */
  fail(requestId: number, code: number, message: string): void {
    this.sendError(requestId, code, message);
    this.state = 'closed';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.cancelWaiters();
    this.socket.end();
    // A peer that never reads must not keep the socket half-open forever.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    // Stays in the server's set until the socket closes, so close() can destroy it.
  }

  close(): void {
    this.server.forget(this);
    if (this.state === 'closed' && this.socket.destroyed) return;
    this.state = 'closed';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.cancelWaiters();
    this.socket.destroy();
  }

  private cancelWaiters(): void {
    for (const w of this.waiters) this.server.dropWaiter(w);
    this.waiters.clear();
  }

  private onData(chunk: Buffer): void {
    if (this.state === 'closed') return;
    const { frames, error } = this.reader.push(chunk);
    for (const f of frames) this.backlog.push(f);
    if (error) this.readError = error;
    this.pump();
  }

  /** Serve queued frames until they run out, the connection closes or replies must drain first. */
  private pump(): void {
    while (this.backlogNext < this.backlog.length && !this.pausedForDrain) {
      // A frame may close the connection; TS cannot see that through the call.
      if ((this.state as ConnectionState) === 'closed') return;
      const frame = this.backlog[this.backlogNext++]!;
      try {
        this.onFrame(frame);
      } catch (e) {
        if (e instanceof ProtocolError) this.fail(frame.requestId, e.errorCode, e.message);
        else this.fail(frame.requestId, ErrorCode.INTERNAL, `internal error: ${(e as Error)?.message ?? String(e)}`);
      }
    }
    if (this.backlogNext >= this.backlog.length) {
      this.backlog = [];
      this.backlogNext = 0;
      if (this.readError && this.state !== 'closed') this.fail(0, this.readError.errorCode, this.readError.message);
    }
  }

  private onFrame(frame: Frame): void {
    if (this.state === 'handshake') {
      this.onHandshake(frame);
      return;
    }
    this.server.handleRequest(this, frame);
  }

  private onHandshake(frame: Frame): void {
    if (frame.op !== Op.HELLO_REPLY) throw new ProtocolError(`expected HELLO_REPLY, got opcode 0x${frame.op.toString(16)}`);
    const c = new Cursor(frame.payload);
    const magic = c.raw(4);
    if (!magic.equals(MAGIC)) throw new ProtocolError('not a ringtree store client (bad magic)');
    const version = c.u16();
    if (version !== STORE_PROTOCOL_VERSION) {
      throw new ProtocolError(`store protocol version ${version} is not supported; this store speaks version ${STORE_PROTOCOL_VERSION}`, ErrorCode.VERSION);
    }
    const clientNonce = c.raw(NONCE_BYTES);
    const clientProof = c.bytes(64, 'proof');
    c.end();
    const token = this.server.token;
    let serverProof: Buffer = Buffer.alloc(0);
    if (token !== undefined) {
      if (clientProof.length === 0) throw new ProtocolError('this store requires a token and the client sent none', ErrorCode.AUTH);
      const expected = proof(token, AUTH_LABEL_CLIENT, this.serverNonce, clientNonce);
      if (!proofMatches(expected, clientProof)) throw new ProtocolError('wrong token', ErrorCode.AUTH);
      serverProof = proof(token, AUTH_LABEL_SERVER, this.serverNonce, clientNonce);
    }
    this.state = 'ready';
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = undefined;
    this.reader.maxFrameBytes = this.server.maxFrameBytes;
    this.send(Op.WELCOME, 0, lengthPrefixed(serverProof));
  }
}

function u16(n: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(n & 0xffff, 0);
  return b;
}

/**
 * The store server. Holds keys in memory; one per job, hosted by rank 0 (or by
 * the launcher). Its listening socket and connections are unref'd: it never
 * keeps a process alive by itself.
 */
export class StoreServer {
  /** The bound address. */
  readonly host: string;
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** @internal */
  readonly token: string | undefined;
  /** @internal */
  readonly maxValueBytes: number;
  /** @internal */
  readonly maxFrameBytes: number;

  private readonly values = new Map<string, Buffer>();
  private readonly waitersByKey = new Map<string, Set<Waiter>>();
  private readonly connections = new Set<ServerConnection>();
  private closed: Promise<void> | undefined;

  private constructor(private readonly server: net.Server, host: string, port: number, token: string | undefined, maxValueBytes: number) {
    this.host = host;
    this.port = port;
    this.token = token;
    this.maxValueBytes = maxValueBytes;
    // A compare-set carries a key and two values; a wait carries many keys.
    this.maxFrameBytes = Math.max(2 * maxValueBytes + STORE_MAX_KEY_BYTES + 64, 16 * 1024 * 1024);
  }

  /**
   * Bind and start serving.
   *
   * @throws InvalidArgumentError (rejected) for a bad port or value limit, or for a
   *   non-loopback `host` without a token unless `insecure`/`RINGTREE_INSECURE=1`.
   * @throws BackendUnavailableError (rejected) naming host:port when the port is in
   *   use, the address is not on this host, or binding is not permitted.
   */
  static async listen(opts: StoreServerOptions): Promise<StoreServer> {
    const host = opts.host ?? '127.0.0.1';
    const op = 'store.listen';
    if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
      throw new InvalidArgumentError(`store port must be an integer in 0..65535, got ${String(opts.port)}`, { op });
    }
    const maxValueBytes = opts.maxValueBytes ?? STORE_DEFAULT_MAX_VALUE_BYTES;
    if (!Number.isInteger(maxValueBytes) || maxValueBytes < 1 || maxValueBytes > 1024 * 1024 * 1024) {
      throw new InvalidArgumentError(`maxValueBytes must be an integer in 1..2^30, got ${String(maxValueBytes)}`, { op });
    }
    const token = tokenFrom(opts.token);
    const insecure = opts.insecure ?? process.env.RINGTREE_INSECURE === '1';
    if (!isLoopback(host) && token === undefined && !insecure) {
      throw new InvalidArgumentError(
        `refusing to serve the store on non-loopback address ${formatAddress(host, opts.port)} without a token: anyone who can reach it could read and write the job's rendezvous data`,
        { op, remedy: 'Set RINGTREE_TOKEN to a shared secret on every rank (ringtree launch does this), or bind 127.0.0.1, or set RINGTREE_INSECURE=1 on a trusted network.' },
      );
    }
    const server = net.createServer();
    const address = formatAddress(host, opts.port);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.close();
        if (err.code === 'EADDRINUSE') {
          reject(new BackendUnavailableError(`store cannot listen on ${address}: port in use`, {
            op, cause: err,
            remedy: `Pick another MASTER_PORT (another job or a leftover process holds ${opts.port}; \`ss -ltnp 'sport = :${opts.port}'\` shows which).`,
          }));
        } else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
          reject(new BackendUnavailableError(`store cannot listen on ${address}: the address is not one of this host's (${err.code})`, {
            op, cause: err, remedy: 'Set MASTER_ADDR to an address of the host that runs rank 0 (see `ip addr`).',
          }));
        } else if (err.code === 'EACCES') {
          reject(new BackendUnavailableError(`store cannot listen on ${address}: permission denied`, {
            op, cause: err, remedy: 'Use a MASTER_PORT above 1023.',
          }));
        } else {
          reject(new BackendUnavailableError(`store cannot listen on ${address}: ${err.message}`, { op, cause: err }));
        }
      };
      server.once('error', onError);
      server.listen({ host, port: opts.port, exclusive: true }, () => {
        server.off('error', onError);
        resolve();
      });
    });
    server.unref();
    const bound = server.address() as net.AddressInfo;
    const store = new StoreServer(server, host, bound.port, token, maxValueBytes);
    server.on('connection', (socket) => store.connections.add(new ServerConnection(socket, store)));
    // Accept errors (EMFILE and the like) must not crash the owning process.
    server.on('error', () => {});
    return store;
  }

  /** Stop listening, drop every connection (their pending waits reject on the client side) and forget all keys. */
  close(): Promise<void> {
    if (this.closed) return this.closed;
    this.closed = new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      for (const c of [...this.connections]) c.close();
      this.values.clear();
    });
    return this.closed;
  }

  /** @internal */
  forget(connection: ServerConnection): void {
    this.connections.delete(connection);
  }

  /** @internal */
  dropWaiter(w: Waiter): void {
    clearTimeout(w.timer);
    for (const key of w.missing) {
      const set = this.waitersByKey.get(key);
      if (!set) continue;
      set.delete(w);
      if (set.size === 0) this.waitersByKey.delete(key);
    }
    w.missing.clear();
  }

  /** @internal Serve one request of an authenticated connection. Throws ProtocolError on malformed input. */
  handleRequest(conn: ServerConnection, frame: Frame): void {
    const c = new Cursor(frame.payload);
    const id = frame.requestId;
    const key = () => c.bytes(STORE_MAX_KEY_BYTES, 'key').toString('latin1');
    const value = () => c.bytes(this.maxValueBytes, 'value');
    switch (frame.op) {
      case Op.SET: {
        const k = key();
        const v = value();
        c.end();
        this.put(k, Buffer.from(v));
        conn.send(Op.OK, id);
        return;
      }
      case Op.GET: {
        const timeoutMs = c.u32();
        const k = key();
        c.end();
        const v = this.values.get(k);
        if (v !== undefined) conn.send(Op.VALUE, id, [v]);
        else this.park(conn, id, [k], k, timeoutMs);
        return;
      }
      case Op.TRY_GET: {
        const k = key();
        c.end();
        const v = this.values.get(k);
        if (v !== undefined) conn.send(Op.VALUE, id, [v]);
        else conn.send(Op.NOT_FOUND, id);
        return;
      }
      case Op.ADD: {
        const k = key();
        const delta = c.i64();
        c.end();
        const old = this.values.get(k);
        let current = 0n;
        if (old !== undefined) {
          const text = old.toString('latin1');
          if (!/^-?\d{1,20}$/.test(text)) {
            conn.sendError(id, ErrorCode.NOT_INTEGER, 'the key holds a value that is not a decimal integer');
            return;
          }
          current = BigInt(text);
        }
        const next = current + delta;
        const text = Buffer.from(next.toString(), 'latin1');
        this.put(k, text);
        conn.send(Op.VALUE, id, [text]);
        return;
      }
      case Op.COMPARE_SET: {
        const k = key();
        const expected = value();
        const desired = value();
        c.end();
        const old = this.values.get(k);
        if (old === undefined) {
          // PyTorch's TCPStore: a missing key is set only when `expected` is
          // empty; otherwise the reply echoes `expected`.
          if (expected.length === 0) {
            const v = Buffer.from(desired);
            this.put(k, v);
            conn.send(Op.VALUE, id, [v]);
          } else {
            conn.send(Op.VALUE, id, [expected]);
          }
        } else if (old.equals(expected)) {
          const v = Buffer.from(desired);
          this.put(k, v);
          conn.send(Op.VALUE, id, [v]);
        } else {
          conn.send(Op.VALUE, id, [old]);
        }
        return;
      }
      case Op.WAIT: {
        const timeoutMs = c.u32();
        const count = c.u32();
        if (count > STORE_MAX_WAIT_KEYS) throw new ProtocolError(`wait names ${count} keys; the limit is ${STORE_MAX_WAIT_KEYS}`, ErrorCode.TOO_LARGE);
        const keys: string[] = [];
        for (let i = 0; i < count; i++) keys.push(key());
        c.end();
        const missing = keys.filter((k) => !this.values.has(k));
        if (missing.length === 0) conn.send(Op.OK, id);
        else this.park(conn, id, missing, undefined, timeoutMs);
        return;
      }
      case Op.DELETE: {
        const k = key();
        c.end();
        conn.send(Op.BOOL, id, [u8(this.values.delete(k) ? 1 : 0)]);
        return;
      }
      default:
        throw new ProtocolError(`unknown opcode 0x${frame.op.toString(16).padStart(2, '0')}`, ErrorCode.UNKNOWN_OP);
    }
  }

  private put(key: string, value: Buffer): void {
    this.values.set(key, value);
    const set = this.waitersByKey.get(key);
    if (!set) return;
    this.waitersByKey.delete(key);
    for (const w of set) {
      w.missing.delete(key);
      if (w.missing.size > 0) continue;
      clearTimeout(w.timer);
      w.connection.waiters.delete(w);
      if (w.getKey !== undefined) w.connection.send(Op.VALUE, w.requestId, [this.values.get(w.getKey) ?? value]);
      else w.connection.send(Op.OK, w.requestId);
    }
  }

  private park(conn: ServerConnection, requestId: number, missing: string[], getKey: string | undefined, timeoutMs: number): void {
    if (conn.waiters.size >= MAX_WAITERS_PER_CONNECTION) {
      conn.sendError(requestId, ErrorCode.TOO_MANY_WAITERS, `more than ${MAX_WAITERS_PER_CONNECTION} blocked requests on one connection`);
      return;
    }
    const waiter: Waiter = {
      connection: conn,
      requestId,
      missing: new Set(missing),
      getKey,
      timer: setTimeout(() => {
        const stillMissing = [...waiter.missing];
        this.dropWaiter(waiter);
        conn.waiters.delete(waiter);
        conn.sendError(requestId, ErrorCode.TIMEOUT, `still missing: ${stillMissing.slice(0, 8).map((k) => JSON.stringify(Buffer.from(k, 'latin1').toString('utf8'))).join(', ')}${stillMissing.length > 8 ? ', ...' : ''}`);
      }, Math.min(timeoutMs, MAX_TIMER_MS)),
    };
    waiter.timer.unref();
    conn.waiters.add(waiter);
    for (const k of waiter.missing) {
      let set = this.waitersByKey.get(k);
      if (!set) this.waitersByKey.set(k, (set = new Set()));
      set.add(waiter);
    }
  }
}

// ---------------------------------------------------------------------------
// Client

/** Options of {@link StoreClient.connect}. */
export interface StoreClientOptions {
  /** Store address (MASTER_ADDR). */
  host: string;
  /** Store port. */
  port: number;
  /** Shared secret. Default `process.env.RINGTREE_TOKEN`; `''` means none. */
  token?: string;
  /**
   * Milliseconds. Connect deadline (refused connections are retried with backoff
   * until then, since the store host may start later) and the default deadline of
   * every request. Default 300 000 (PyTorch's TCPStore default).
   */
  timeoutMs?: number;
  /** This process's rank, named in error messages. */
  rank?: number;
  /** Largest value this client sends, in bytes; should match the server's. Default 64 MiB. */
  maxValueBytes?: number;
}

/**
 * The store operations. {@link StoreClient} and the views from
 * {@link Store.prefix} share it. Keys are UTF-8 strings of 1..4096 bytes; values
 * are bytes (strings are sent as UTF-8).
 */
export interface Store {
  /** Set `key` to `value`, waking anyone waiting on it. @throws InvalidArgumentError for an oversized key/value. */
  set(key: string, value: string | Uint8Array): Promise<void>;
  /**
   * Wait until `key` exists and return its value (PyTorch semantics).
   * @param opts.timeoutMs deadline in ms; default the client's `timeoutMs`.
   * @throws TimeoutError naming the key when the deadline passes.
   */
  get(key: string, opts?: { timeoutMs?: number }): Promise<Uint8Array>;
  /** The value of `key`, or undefined when absent; never waits. */
  tryGet(key: string): Promise<Uint8Array | undefined>;
  /**
   * Add the integer `delta` to the counter at `key` (absent counts as 0; stored
   * as a decimal string) and return the new value.
   * @throws InvalidArgumentError when `delta` is not a safe integer or the key holds a non-integer.
   */
  add(key: string, delta: number): Promise<number>;
  /**
   * PyTorch `compare_set`: if the key holds `expected`, set it to `desired`. If the
   * key is missing and `expected` is empty, set it to `desired`. Returns the value
   * now stored, except that for a missing key and a non-empty `expected` it
   * returns `expected` (as PyTorch does) and sets nothing.
   */
  compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array>;
  /** Wait until every key exists. @throws TimeoutError naming the missing keys. */
  wait(keys: string[], opts?: { timeoutMs?: number }): Promise<void>;
  /** Delete `key`; true when it existed. */
  delete(key: string): Promise<boolean>;
  /** A view in which every key is prefixed with `${p}/`; views nest. */
  prefix(p: string): Store;
  /**
   * Block until `worldSize` callers reached the barrier `name`. Reusable: the
   * n-th use of a name waits for the n-th group of `worldSize` arrivals.
   * @throws TimeoutError saying how many arrived.
   */
  barrier(name: string, worldSize: number, opts?: { timeoutMs?: number }): Promise<void>;
}

interface Pending {
  resolve: (frame: Frame) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

function toBytes(value: string | Uint8Array, what: string, op: string): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidArgumentError(`${what} must be a string or a Uint8Array, got ${typeof value}`, { op });
}

/** A connection to a {@link StoreServer}. Idle connections do not keep the process alive. */
export class StoreClient implements Store {
  /** Store host. */
  readonly host: string;
  /** Store port. */
  readonly port: number;
  /** Rank named in errors. */
  readonly rank: number | undefined;
  /** Default per-request deadline, ms. */
  readonly timeoutMs: number;
  private readonly maxValueBytes: number;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private failure: RingtreeError | undefined;
  private readonly reader: FrameReader;

  /** This end's address of the store connection: the address peers can reach this host at, as seen on the route to the store. */
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  private constructor(private readonly socket: net.Socket, opts: StoreClientOptions, timeoutMs: number, maxValueBytes: number, reader: FrameReader, leftover: Frame[]) {
    this.host = opts.host;
    this.port = opts.port;
    this.rank = opts.rank;
    this.timeoutMs = timeoutMs;
    this.maxValueBytes = maxValueBytes;
    this.reader = reader;
    reader.maxFrameBytes = Math.max(2 * maxValueBytes + STORE_MAX_KEY_BYTES + 64, 16 * 1024 * 1024);
    socket.removeAllListeners('data');
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => this.lose(err));
    socket.on('close', () => this.lose(undefined));
    socket.unref();
    for (const f of leftover) this.onFrame(f);
  }

  /** `host:port`, for messages. */
  get address(): string {
    return formatAddress(this.host, this.port);
  }

  /**
   * Connect and authenticate, retrying refused connections with backoff until
   * `timeoutMs` (the store host may start after this rank).
   *
   * @throws TimeoutError (rejected) when no connection succeeded by the deadline.
   * @throws BackendUnavailableError (rejected) on a wrong or missing token or a protocol version mismatch (not retried).
   * @throws InvalidArgumentError (rejected) for bad options.
   */
  static async connect(opts: StoreClientOptions): Promise<StoreClient> {
    const op = 'store.connect';
    const rank = opts.rank;
    if (typeof opts.host !== 'string' || opts.host.length === 0) throw new InvalidArgumentError(`store host must be a non-empty string, got ${String(opts.host)}`, { op, rank });
    if (!Number.isInteger(opts.port) || opts.port < 1 || opts.port > 65535) {
      throw new InvalidArgumentError(`store port must be an integer in 1..65535, got ${String(opts.port)}`, { op, rank });
    }
    const timeoutMs = validTimeout(opts.timeoutMs, STORE_DEFAULT_TIMEOUT_MS, op, rank);
    const maxValueBytes = opts.maxValueBytes ?? STORE_DEFAULT_MAX_VALUE_BYTES;
    const token = tokenFrom(opts.token);
    const address = formatAddress(opts.host, opts.port);
    const deadline = Date.now() + timeoutMs;
    let delay = 50;
    let lastError = 'no attempt';
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const attempt = await attemptConnect(opts.host, opts.port, token, Math.min(remaining, 10_000), address, rank);
      if (attempt.ok) return new StoreClient(attempt.socket, opts, timeoutMs, maxValueBytes, attempt.reader, attempt.leftover);
      if (attempt.fatal) throw attempt.fatal;
      lastError = attempt.reason;
      const wait = Math.min(delay * (0.5 + Math.random()), deadline - Date.now());
      if (wait <= 0) break;
      await new Promise((r) => setTimeout(r, wait));
      delay = Math.min(delay * 2, 1000);
    }
    throw new TimeoutError(`could not connect to the store at ${address} within ${timeoutMs} ms (last error: ${lastError})`, {
      op, rank, timeoutMs,
      remedy: 'Check MASTER_ADDR/MASTER_PORT on every rank, that the rank hosting the store (rank 0) started and did not fail (e.g. "port in use" in its output), and that no firewall blocks the port.',
    });
  }

  /** Close the connection. Pending requests reject with AbortedError; the server cancels this client's waits. Idempotent. */
  close(): void {
    if (!this.failure) this.failure = new AbortedError(`store client for ${this.address} was closed`, { op: 'store', rank: this.rank });
    this.rejectAll(this.failure);
    this.socket.destroy();
  }

  /** {@inheritDoc Store.set} */
  async set(key: string, value: string | Uint8Array): Promise<void> {
    const k = this.keyBytes(key, 'store.set');
    const v = this.valueBytes(value, 'value', 'store.set', key);
    await this.request('store.set', key, Op.SET, [...lengthPrefixed(k), ...lengthPrefixed(v)], this.timeoutMs, false);
  }

  /** {@inheritDoc Store.get} */
  async get(key: string, opts?: { timeoutMs?: number }): Promise<Uint8Array> {
    const k = this.keyBytes(key, 'store.get');
    const timeoutMs = validTimeout(opts?.timeoutMs, this.timeoutMs, 'store.get', this.rank);
    const frame = await this.request('store.get', key, Op.GET, [u32(timeoutMs), ...lengthPrefixed(k)], timeoutMs, true);
    return this.expectValue(frame, 'store.get', key);
  }

  /** {@inheritDoc Store.tryGet} */
  async tryGet(key: string): Promise<Uint8Array | undefined> {
    const k = this.keyBytes(key, 'store.tryGet');
    const frame = await this.request('store.tryGet', key, Op.TRY_GET, lengthPrefixed(k), this.timeoutMs, false);
    if (frame.op === Op.NOT_FOUND) return undefined;
    return this.expectValue(frame, 'store.tryGet', key);
  }

  /** {@inheritDoc Store.add} */
  async add(key: string, delta: number): Promise<number> {
    const op = 'store.add';
    const k = this.keyBytes(key, op);
    if (!Number.isSafeInteger(delta)) throw new InvalidArgumentError(`add delta must be a safe integer, got ${String(delta)}`, { op, rank: this.rank });
    const d = Buffer.allocUnsafe(8);
    d.writeBigInt64BE(BigInt(delta), 0);
    const frame = await this.request(op, key, Op.ADD, [...lengthPrefixed(k), d], this.timeoutMs, false);
    const text = Buffer.from(this.expectValue(frame, op, key)).toString('latin1');
    const n = Number(text);
    if (!Number.isSafeInteger(n)) {
      throw new InvalidArgumentError(`counter ${JSON.stringify(key)} is ${text}, beyond the safe integer range`, { op, rank: this.rank });
    }
    return n;
  }

  /** {@inheritDoc Store.compareSet} */
  async compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array> {
    const op = 'store.compareSet';
    const k = this.keyBytes(key, op);
    const e = this.valueBytes(expected, 'expected', op, key);
    const d = this.valueBytes(desired, 'desired', op, key);
    const frame = await this.request(op, key, Op.COMPARE_SET, [...lengthPrefixed(k), ...lengthPrefixed(e), ...lengthPrefixed(d)], this.timeoutMs, false);
    return this.expectValue(frame, op, key);
  }

  /** {@inheritDoc Store.wait} */
  async wait(keys: string[], opts?: { timeoutMs?: number }): Promise<void> {
    const op = 'store.wait';
    if (!Array.isArray(keys)) throw new InvalidArgumentError('wait expects an array of keys', { op, rank: this.rank });
    if (keys.length > STORE_MAX_WAIT_KEYS) throw new InvalidArgumentError(`wait names ${keys.length} keys; the limit is ${STORE_MAX_WAIT_KEYS}`, { op, rank: this.rank });
    const timeoutMs = validTimeout(opts?.timeoutMs, this.timeoutMs, op, this.rank);
    const parts: Uint8Array[] = [u32(timeoutMs), u32(keys.length)];
    for (const key of keys) parts.push(...lengthPrefixed(this.keyBytes(key, op)));
    const label = keys.length === 1 ? keys[0]! : `${keys.length} keys`;
    await this.request(op, label, Op.WAIT, parts, timeoutMs, true);
  }

  /** {@inheritDoc Store.delete} */
  async delete(key: string): Promise<boolean> {
    const k = this.keyBytes(key, 'store.delete');
    const frame = await this.request('store.delete', key, Op.DELETE, lengthPrefixed(k), this.timeoutMs, false);
    if (frame.op !== Op.BOOL || frame.payload.length !== 1) throw this.protocolFailure(`unexpected reply 0x${frame.op.toString(16)} to delete`);
    return frame.payload[0] === 1;
  }

  /** {@inheritDoc Store.prefix} */
  prefix(p: string): Store {
    return new PrefixStore(this, checkPrefix(p, this.rank));
  }

  /** {@inheritDoc Store.barrier} */
  barrier(name: string, worldSize: number, opts?: { timeoutMs?: number }): Promise<void> {
    return storeBarrier(this, name, worldSize, opts, this.rank);
  }

  // -- internals ------------------------------------------------------------

  private keyBytes(key: string, op: string): Buffer {
    if (typeof key !== 'string') throw new InvalidArgumentError(`store key must be a string, got ${typeof key}`, { op, rank: this.rank });
    const k = Buffer.from(key, 'utf8');
    if (k.length === 0) throw new InvalidArgumentError('store key must not be empty', { op, rank: this.rank });
    if (k.length > STORE_MAX_KEY_BYTES) {
      throw new InvalidArgumentError(`store key of ${k.length} bytes exceeds the limit of ${STORE_MAX_KEY_BYTES} (key starts ${JSON.stringify(key.slice(0, 40))})`, { op, rank: this.rank });
    }
    return k;
  }

  private valueBytes(value: string | Uint8Array, what: string, op: string, key: string): Buffer {
    const v = toBytes(value, what, op);
    if (v.length > this.maxValueBytes) {
      throw new InvalidArgumentError(`${what} for key ${JSON.stringify(key)} is ${v.length} bytes; the store limit is ${this.maxValueBytes}`, {
        op, rank: this.rank, remedy: 'Store large data elsewhere (a file, or a collective) and put only its location in the store.',
      });
    }
    return v;
  }

  private expectValue(frame: Frame, op: string, key: string): Uint8Array {
    if (frame.op !== Op.VALUE) throw this.protocolFailure(`unexpected reply 0x${frame.op.toString(16)} to ${op} of ${JSON.stringify(key)}`);
    // The payload is a view into a receive buffer that may be shared: copy.
    return Buffer.from(frame.payload);
  }

  private request(op: string, key: string, opcode: number, parts: Uint8Array[], timeoutMs: number, blocking: boolean): Promise<Frame> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const address = this.address;
    return new Promise<Frame>((resolve, reject) => {
      // The server enforces a blocking call's deadline and says what is missing;
      // this timer only backs it up in case the server itself is stuck.
      const localMs = Math.min(blocking ? timeoutMs + CLIENT_GRACE_MS : Math.max(timeoutMs, 1), MAX_TIMER_MS);
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        this.updateRef();
        reject(new TimeoutError(`${op} of ${JSON.stringify(key)} got no reply from the store at ${address} within ${timeoutMs} ms`, {
          op, rank: this.rank, timeoutMs,
          remedy: 'The store host may be overloaded or unreachable; check the process that hosts it (rank 0 or the launcher).',
        }));
      }, localMs);
      this.pending.set(id, {
        timer,
        reject,
        resolve: (frame) => {
          if (frame.op !== Op.ERROR) {
            resolve(frame);
            return;
          }
          reject(this.errorFromReply(frame, op, key, timeoutMs));
        },
      });
      this.updateRef();
      this.socket.write(encodeFrame(opcode, id, parts));
    });
  }

  private errorFromReply(frame: Frame, op: string, key: string, timeoutMs: number): RingtreeError {
    const c = new Cursor(frame.payload);
    let code = 0;
    let message = '';
    try {
      code = c.u16();
      message = c.rest().toString('utf8');
    } catch {
      message = 'malformed error reply';
    }
    const where = `${op} of ${JSON.stringify(key)} at the store ${this.address}`;
    const details = { op, rank: this.rank };
    switch (code) {
      case ErrorCode.TIMEOUT:
        return new TimeoutError(`${where} timed out after ${timeoutMs} ms (${message})`, {
          ...details, timeoutMs,
          remedy: 'Find why the rank that should set the key has not (did it crash, or is it waiting on something else?); raise timeoutMs if it is just slow.',
        });
      case ErrorCode.NOT_INTEGER:
        return new InvalidArgumentError(`${where}: ${message}`, details);
      case ErrorCode.TOO_LARGE:
        return new InvalidArgumentError(`${where} was refused: ${message}`, { ...details, remedy: 'Use the same maxValueBytes on the server and the clients, or store less.' });
      default:
        return new BackendUnavailableError(`${where} failed: ${message} (error code ${code})`, details);
    }
  }

  private protocolFailure(message: string): RingtreeError {
    const err = new BackendUnavailableError(`protocol error from the store at ${this.address}: ${message}`, { op: 'store', rank: this.rank });
    this.failure ??= err;
    this.rejectAll(err);
    this.socket.destroy();
    return err;
  }

  private onData(chunk: Buffer): void {
    const { frames, error } = this.reader.push(chunk);
    for (const f of frames) this.onFrame(f);
    if (error) this.protocolFailure(error.message);
  }

  private onFrame(frame: Frame): void {
    if (frame.requestId === 0) {
      // A connection-level error (the server is closing this connection).
      if (frame.op === Op.ERROR) this.protocolFailure(this.errorFromReply(frame, 'store', '*', this.timeoutMs).message);
      else this.protocolFailure(`unexpected frame 0x${frame.op.toString(16)}`);
      return;
    }
    const p = this.pending.get(frame.requestId);
    if (!p) return; // timed out locally; the late reply is dropped
    this.pending.delete(frame.requestId);
    clearTimeout(p.timer);
    this.updateRef();
    p.resolve(frame);
  }

  private lose(err: Error | undefined): void {
    if (!this.failure) {
      this.failure = new PeerLostError(`lost the connection to the store at ${this.address}${err ? ` (${(err as NodeJS.ErrnoException).code ?? err.message})` : ''}`, {
        op: 'store', rank: this.rank,
        remedy: 'The process hosting the store (rank 0 or the launcher) exited or became unreachable; check its output, then restart the job.',
      });
    }
    this.rejectAll(this.failure);
  }

  private rejectAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.updateRef();
  }

  /** Keep the event loop alive exactly while a request is outstanding. */
  private updateRef(): void {
    if (this.pending.size > 0) this.socket.ref();
    else this.socket.unref();
  }
}

type AttemptResult =
  | { ok: true; socket: net.Socket; reader: FrameReader; leftover: Frame[] }
  | { ok: false; fatal?: RingtreeError; reason: string };

/** One connect + handshake. Resolves, never rejects. */
function attemptConnect(host: string, port: number, token: string | undefined, limitMs: number, address: string, rank: number | undefined): Promise<AttemptResult> {
  const op = 'store.connect';
  return new Promise<AttemptResult>((resolve) => {
    const socket = net.connect({ host, port });
    socket.setNoDelay(true);
    const reader = new FrameReader(HANDSHAKE_MAX_FRAME_BYTES);
    const clientNonce = crypto.randomBytes(NONCE_BYTES);
    let serverNonce: Buffer | undefined;
    let settled = false;
    const finish = (r: AttemptResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!r.ok) socket.destroy();
      resolve(r);
    };
    const fatal = (message: string, remedy?: string) => finish({ ok: false, reason: message, fatal: new BackendUnavailableError(message, { op, rank, remedy }) });
    const timer = setTimeout(() => finish({ ok: false, reason: `no handshake within ${limitMs} ms` }), limitMs);
    socket.on('error', (err: NodeJS.ErrnoException) => finish({ ok: false, reason: err.code ?? err.message }));
    socket.on('close', () => finish({ ok: false, reason: 'connection closed during the handshake' }));
    socket.on('data', (chunk: Buffer) => {
      if (settled) return;
      const { frames, error } = reader.push(chunk);
      if (error) {
        fatal(`${address} is not a ringtree store: ${error.message}`, 'Check MASTER_ADDR/MASTER_PORT: something else listens there.');
        return;
      }
      for (let i = 0; i < frames.length && !settled; i++) {
        const f = frames[i]!;
        try {
          if (f.op === Op.ERROR) {
            const c = new Cursor(f.payload);
            const code = c.u16();
            const message = c.rest().toString('utf8');
            if (code === ErrorCode.AUTH) fatal(`the store at ${address} rejected this rank's token: wrong token (${message})`, TOKEN_REMEDY);
            else if (code === ErrorCode.VERSION) fatal(`the store at ${address} refused the handshake: ${message}`, 'Run the same ringtree version on every rank.');
            else fatal(`the store at ${address} refused the handshake: ${message}`);
          } else if (serverNonce === undefined) {
            if (f.op !== Op.HELLO) throw new ProtocolError(`expected HELLO, got 0x${f.op.toString(16)}`);
            const c = new Cursor(f.payload);
            if (!c.raw(4).equals(MAGIC)) throw new ProtocolError('bad magic');
            const version = c.u16();
            const authRequired = c.u8() === 1;
            serverNonce = Buffer.from(c.raw(NONCE_BYTES));
            c.end();
            if (version !== STORE_PROTOCOL_VERSION) {
              fatal(`the store at ${address} speaks protocol version ${version}; this rank speaks ${STORE_PROTOCOL_VERSION}`, 'Run the same ringtree version on every rank.');
              return;
            }
            if (authRequired && token === undefined) {
              fatal(`the store at ${address} requires a token and this rank has none (RINGTREE_TOKEN is not set)`, TOKEN_REMEDY);
              return;
            }
            if (!authRequired && token !== undefined) {
              // Mutual authentication: with a token we only trust a store that proves it knows it.
              fatal(`the store at ${address} does not require a token but this rank has RINGTREE_TOKEN set; refusing to trust a store that cannot prove it knows the token`, TOKEN_REMEDY);
              return;
            }
            const p = token !== undefined ? proof(token, AUTH_LABEL_CLIENT, serverNonce, clientNonce) : Buffer.alloc(0);
            socket.write(encodeFrame(Op.HELLO_REPLY, 0, [MAGIC, u16(STORE_PROTOCOL_VERSION), clientNonce, ...lengthPrefixed(p)]));
          } else {
            if (f.op !== Op.WELCOME) throw new ProtocolError(`expected WELCOME, got 0x${f.op.toString(16)}`);
            const c = new Cursor(f.payload);
            const serverProof = c.bytes(64, 'proof');
            c.end();
            if (token !== undefined && !proofMatches(proof(token, AUTH_LABEL_SERVER, serverNonce, clientNonce), serverProof)) {
              fatal(`the store at ${address} could not prove it knows the token: wrong token on the store host`, TOKEN_REMEDY);
              return;
            }
            finish({ ok: true, socket, reader, leftover: frames.slice(i + 1) });
          }
        } catch (e) {
          fatal(`${address} is not a ringtree store or broke the handshake: ${(e as Error).message}`, 'Check MASTER_ADDR/MASTER_PORT: something else may listen there.');
        }
      }
    });
  });
}

function checkPrefix(p: string, rank: number | undefined): string {
  if (typeof p !== 'string' || p.length === 0) throw new InvalidArgumentError(`store prefix must be a non-empty string, got ${JSON.stringify(p)}`, { op: 'store.prefix', rank });
  return p;
}

/** A view of a client in which every key is `${prefix}/key`. */
class PrefixStore implements Store {
  constructor(private readonly client: StoreClient, private readonly prefixPath: string) {}
  private k(key: string): string {
    if (typeof key !== 'string') throw new InvalidArgumentError(`store key must be a string, got ${typeof key}`, { op: 'store', rank: this.client.rank });
    return `${this.prefixPath}/${key}`;
  }
  set(key: string, value: string | Uint8Array): Promise<void> {
    return this.wrap(() => this.client.set(this.k(key), value));
  }
  get(key: string, opts?: { timeoutMs?: number }): Promise<Uint8Array> {
    return this.wrap(() => this.client.get(this.k(key), opts));
  }
  tryGet(key: string): Promise<Uint8Array | undefined> {
    return this.wrap(() => this.client.tryGet(this.k(key)));
  }
  add(key: string, delta: number): Promise<number> {
    return this.wrap(() => this.client.add(this.k(key), delta));
  }
  compareSet(key: string, expected: string | Uint8Array, desired: string | Uint8Array): Promise<Uint8Array> {
    return this.wrap(() => this.client.compareSet(this.k(key), expected, desired));
  }
  wait(keys: string[], opts?: { timeoutMs?: number }): Promise<void> {
    return this.wrap(() => {
      if (!Array.isArray(keys)) throw new InvalidArgumentError('wait expects an array of keys', { op: 'store.wait', rank: this.client.rank });
      return this.client.wait(keys.map((key) => this.k(key)), opts);
    });
  }
  delete(key: string): Promise<boolean> {
    return this.wrap(() => this.client.delete(this.k(key)));
  }
  prefix(p: string): Store {
    return new PrefixStore(this.client, `${this.prefixPath}/${checkPrefix(p, this.client.rank)}`);
  }
  barrier(name: string, worldSize: number, opts?: { timeoutMs?: number }): Promise<void> {
    return storeBarrier(this, name, worldSize, opts, this.client.rank);
  }
  /** Async methods reject, never throw. */
  private async wrap<T>(fn: () => Promise<T>): Promise<T> {
    return fn();
  }
}

async function storeBarrier(store: Store, name: string, worldSize: number, opts: { timeoutMs?: number } | undefined, rank: number | undefined): Promise<void> {
  const op = 'store.barrier';
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError('barrier name must be a non-empty string', { op, rank });
  if (!Number.isSafeInteger(worldSize) || worldSize < 1) throw new InvalidArgumentError(`barrier worldSize must be a positive integer, got ${String(worldSize)}`, { op, rank });
  const counterKey = `${name}/arrived`;
  const arrived = await store.add(counterKey, 1);
  // Generation g is complete when the counter reaches g * worldSize; whoever
  // makes it so releases that generation. This makes a name reusable.
  const generation = Math.ceil(arrived / worldSize);
  const doneKey = `${name}/done/${generation}`;
  if (arrived === generation * worldSize) await store.set(doneKey, '1');
  try {
    await store.wait([doneKey], opts);
  } catch (e) {
    if (!(e instanceof TimeoutError)) throw e;
    const now = await store.tryGet(counterKey).catch(() => undefined);
    const count = now === undefined ? '?' : String(Number(Buffer.from(now).toString('latin1')) - (generation - 1) * worldSize);
    throw new TimeoutError(`barrier ${JSON.stringify(name)} timed out: ${count} of ${worldSize} ranks arrived`, {
      op, rank, timeoutMs: e.timeoutMs, cause: e,
      remedy: 'Some rank did not reach this barrier (crashed, hung, or took another code path); check the ranks that did not arrive.',
    });
  }
}
