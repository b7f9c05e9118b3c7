// A hand-rolled store peer for tests that must speak (or break) the wire
// protocol directly: garbage input, unknown opcodes, oversized frames.
import * as crypto from 'node:crypto';
import * as net from 'node:net';
import { encodeFrame, lengthPrefixed, Op, STORE_PROTOCOL_VERSION } from '../lib/store.js';

export interface RawFrame {
  op: number;
  requestId: number;
  payload: Buffer;
}

export class RawPeer {
  private buffered = Buffer.alloc(0);
  readonly frames: RawFrame[] = [];
  private waiters: (() => void)[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      while (this.buffered.length >= 4) {
        const len = this.buffered.readUInt32BE(0);
        if (this.buffered.length < 4 + len) break;
        const body = this.buffered.subarray(4, 4 + len);
        this.frames.push({ op: body[0]!, requestId: body.readUInt32BE(1), payload: Buffer.from(body.subarray(5)) });
        this.buffered = this.buffered.subarray(4 + len);
      }
      this.wake();
    });
    socket.on('error', () => {});
    this.closedPromise = new Promise((resolve) => socket.on('close', () => {
      this.closed = true;
      this.wake();
      resolve();
    }));
  }

  static open(port: number): Promise<RawPeer> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => resolve(new RawPeer(s)));
      s.once('error', reject);
    });
  }

  /** Connect and complete the handshake (with `token` when the server wants one). */
  static async handshake(port: number, token?: string): Promise<RawPeer> {
    const peer = await RawPeer.open(port);
    const hello = await peer.next();
    if (hello.op !== Op.HELLO) throw new Error(`expected HELLO, got ${hello.op}`);
    const serverNonce = hello.payload.subarray(7, 39);
    const clientNonce = crypto.randomBytes(32);
    const proof = token
      ? crypto.createHmac('sha256', token).update('ringtree-store/1 client proof').update(serverNonce).update(clientNonce).digest()
      : Buffer.alloc(0);
    const version = Buffer.alloc(2);
    version.writeUInt16BE(STORE_PROTOCOL_VERSION);
    peer.send(encodeFrame(Op.HELLO_REPLY, 0, [Buffer.from('RTKV'), version, clientNonce, ...lengthPrefixed(proof)]));
    const welcome = await peer.next();
    if (welcome.op !== Op.WELCOME) throw new Error(`expected WELCOME, got ${welcome.op}`);
    return peer;
  }

  send(bytes: Uint8Array): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The next frame; rejects if the connection closes first or after `ms`. */
  async next(ms = 5000): Promise<RawFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.shift();
      if (f) return f;
      if (this.closed) throw new Error('connection closed');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no frame in time');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Error code of an ERROR frame. */
export function errorCodeOf(frame: RawFrame): number {
  return frame.payload.readUInt16BE(0);
}

/** Mulberry32: small, seeded, good enough to make fuzz failures reproducible. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
